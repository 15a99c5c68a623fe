package broker

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// groupsLogFile is kfake's log of consumer group state in a data dir: a
// sequence of framed entries, each
//
//	[4 bytes length][4 bytes CRC-32C][2 bytes version][JSON]
//
// (little-endian; the length counts the version and the JSON, the
// checksum covers them). kfake replays it when it loads, keeping the last
// entry of each key; a torn entry at the end and anything after it is
// ignored.
const groupsLogFile = "groups.log"

// groupsLogVersion is the version kfake writes its entries with.
const groupsLogVersion = 1

// groupLogEntry is the part of kfake's group log entry that offsets use.
// A "commit" entry sets a group's offset of a partition, a "delete" entry
// removes it; other types (group metadata, static members) are kept as
// they are.
type groupLogEntry struct {
	Type       string  `json:"type"`
	Group      string  `json:"g"`
	Topic      string  `json:"t,omitempty"`
	Part       int32   `json:"p,omitempty"`
	Offset     int64   `json:"o,omitempty"`
	Epoch      int32   `json:"e,omitempty"`
	Metadata   *string `json:"m,omitempty"`
	LastCommit *int64  `json:"lc,omitempty"`
}

// groupOffsetKey names one committed offset: a group's, of one partition.
type groupOffsetKey struct {
	group, topic string
	partition    int32
}

// readGroupOffsets returns the offsets dataDir's groups.log commits, as
// kfake will load them, and the length of its whole entries (what follows
// is a torn entry kfake ignores).
func readGroupOffsets(dataDir string) (map[groupOffsetKey]int64, int64, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, groupsLogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[groupOffsetKey]int64{}, 0, nil
	} else if err != nil {
		return nil, 0, err
	}
	offsets := map[groupOffsetKey]int64{}
	pos := 0
	for pos+10 <= len(raw) {
		length := int(binary.LittleEndian.Uint32(raw[pos:]))
		end := pos + 8 + length
		if length < 2 || end > len(raw) || binary.LittleEndian.Uint32(raw[pos+4:]) != crc32.Checksum(raw[pos+8:end], crc32c) {
			break
		}
		var e groupLogEntry
		if json.Unmarshal(raw[pos+10:end], &e) == nil {
			key := groupOffsetKey{e.Group, e.Topic, e.Part}
			switch e.Type {
			case "commit":
				offsets[key] = e.Offset
			case "delete":
				delete(offsets, key)
			}
		}
		pos = end
	}
	return offsets, int64(pos), nil
}

// commitTornOffsets writes into dataDir's groups.log, before kfake loads
// it, each offset of intent that is ahead of its group's committed one:
// the offsets kfake had not persisted when a crash cut the commit of
// their transaction. An offset is never moved back. Done on the files,
// the completion cannot meet a group that workers have joined meanwhile
// (a live group refuses a commit from outside its generation). A torn
// entry at the end of the log, which kfake would ignore along with all
// after it, is cut off first.
func commitTornOffsets(dataDir string, intent *commitIntent) error {
	if len(intent.Offsets) == 0 {
		return nil
	}
	topics, err := readTopics(dataDir)
	if err != nil {
		return err
	}
	names := map[string]string{} // topic ids (hex) to names, for v6 commits
	for _, t := range topics {
		names[hex.EncodeToString(t.ID)] = t.Name
	}
	committed, valid, err := readGroupOffsets(dataDir)
	if err != nil {
		return err
	}
	var entries []byte
	now := time.Now().UnixMilli()
	for _, o := range intent.Offsets {
		topic := o.Topic
		if topic == "" {
			if topic = names[o.TopicID]; topic == "" {
				continue // the topic is gone
			}
		}
		if at, ok := committed[groupOffsetKey{o.Group, topic, o.Partition}]; ok && at >= o.Offset {
			continue
		}
		data, err := json.Marshal(groupLogEntry{
			Type: "commit", Group: o.Group, Topic: topic, Part: o.Partition,
			Offset: o.Offset, Epoch: o.LeaderEpoch, Metadata: o.Metadata, LastCommit: &now,
		})
		if err != nil {
			return err
		}
		entries = appendGroupsLogEntry(entries, data)
	}
	if len(entries) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dataDir, groupsLogFile), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(valid); err != nil {
		return err
	}
	if _, err := f.WriteAt(entries, valid); err != nil {
		return fmt.Errorf("%s: %w", groupsLogFile, err)
	}
	return f.Sync()
}

// appendGroupsLogEntry appends data to dst framed as a groups.log entry.
func appendGroupsLogEntry(dst, data []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(2+len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, 0) // the checksum, below
	dst = binary.LittleEndian.AppendUint16(dst, groupsLogVersion)
	dst = append(dst, data...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], crc32c))
	return dst
}
