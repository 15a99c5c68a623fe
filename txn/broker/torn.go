package broker

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// committing makes a transaction commit whole across a crash of the
// embedded broker: in every partition it wrote to, and with every
// consumer offset it carries.
//
// # Why
//
// kfake ends a transaction in one step that a crash can cut: it appends
// the commit marker to each partition of the transaction in turn, then
// applies and persists the transaction's offsets one partition at a time,
// then logs the end of the transaction. Killed within that step, it comes
// back with the transaction torn: its records committed in the partitions
// that got their marker, aborted (by the crash recovery, see recover.go)
// in the others; or committed everywhere with its offsets lost, so that a
// consumer reads the same input again and produces its output twice. A
// Kafka coordinator first logs its decision (PrepareCommit) and completes
// the commit from that log after any crash.
//
// # How
//
// The broker keeps that log itself, in committing.json in the data dir.
// It watches TxnOffsetCommit requests, keeping each producer's offsets
// of its current transaction, and each EndTxn that commits: before kfake
// handles it, it writes the producer id and epoch and the transaction's
// offsets there. The next request of any kind the broker handles comes
// after kfake has ended that transaction (kfake handles requests one at
// a time), and empties the file again.
//
// Before kfake loads a data dir (completeTornCommit), a transaction named
// in the file is looked for in the partitions kfake replays. Since every
// EndTxn of a transactional producer bumps its epoch (KIP-890), records
// of a producer id at an epoch belong to one transaction. If any
// partition holds its commit marker, kfake had begun to commit it: each
// partition that holds its records without a marker gets a commit marker
// appended to its last segment (after cutting a torn batch off the end,
// as kfake's load would), so kfake loads the transaction committed
// everywhere; and each offset the transaction carries is appended to
// kfake's groups.log (commitTornOffsets) where the group's committed
// offset is below it, never moving one back. Without any marker, kfake never began
// the commit, nor answered it: the crash recovery aborts the transaction,
// as Kafka does one whose coordinator failed before PrepareCommit.
//
// A transaction that wrote no record and only commits offsets has no
// marker to tell whether kfake began to commit it; it is left as kfake
// leaves it. For sluice this is harmless: a batch without output that is
// read again produces no output again.
//
// The file holds one transaction, and is only written while kfake is
// about to end it, so it costs one small write per commit and one
// truncation after it. A caller's control function must not sleep on an
// EndTxn (Start's doc says why): the broker's would then record a commit
// that kfake ends later than the next request.
type committing struct {
	cluster *kfake.Cluster
	sync    bool

	mu sync.Mutex
	f  *os.File
	// offsets are each producer's transactional offsets of its current
	// transaction, by producer id.
	offsets map[int64]*txnOffsets
	// logged is the EndTxn whose commit the file holds; nil when empty.
	logged kmsg.Request
	// watching reports whether a control function waits for the request
	// after logged.
	watching bool
}

// txnOffsets are the offsets a producer committed in one transaction.
type txnOffsets struct {
	epoch   int16
	offsets map[tornOffsetKey]tornOffset
}

// tornOffsetKey names one partition of one group.
type tornOffsetKey struct {
	group, topic, topicID string
	partition             int32
}

// commitIntent is the content of committing.json: a transaction that
// kfake is about to commit.
type commitIntent struct {
	ProducerID    int64        `json:"producer_id"`
	ProducerEpoch int16        `json:"producer_epoch"`
	Offsets       []tornOffset `json:"offsets,omitempty"`
}

// tornOffset is one offset of a transaction. A topic is named by its name
// or, as TxnOffsetCommit v6 names it, by its id (hex).
type tornOffset struct {
	Group       string  `json:"group"`
	Topic       string  `json:"topic,omitempty"`
	TopicID     string  `json:"topic_id,omitempty"`
	Partition   int32   `json:"partition"`
	Offset      int64   `json:"offset"`
	LeaderEpoch int32   `json:"leader_epoch"`
	Metadata    *string `json:"metadata,omitempty"`
}

// committingFile is the name of the file in the data dir.
const committingFile = "committing.json"

// watchCommits installs the control functions that keep committing.json
// in dataDir.
func watchCommits(cluster *kfake.Cluster, dataDir string, sync bool) error {
	f, err := os.OpenFile(filepath.Join(dataDir, committingFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	w := &committing{cluster: cluster, sync: sync, f: f, offsets: map[int64]*txnOffsets{}}
	cluster.ControlKey(kmsg.TxnOffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		w.offsetCommit(req.(*kmsg.TxnOffsetCommitRequest))
		return nil, nil, false
	})
	cluster.ControlKey(kmsg.EndTxn.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		w.endTxn(req.(*kmsg.EndTxnRequest))
		return nil, nil, false
	})
	return nil
}

// offsetCommit keeps the offsets of a TxnOffsetCommit.
func (w *committing) offsetCommit(req *kmsg.TxnOffsetCommitRequest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	txn := w.offsets[req.ProducerID]
	if txn == nil || txn.epoch != req.ProducerEpoch {
		txn = &txnOffsets{epoch: req.ProducerEpoch, offsets: map[tornOffsetKey]tornOffset{}}
		w.offsets[req.ProducerID] = txn
	}
	for _, t := range req.Topics {
		id := ""
		if t.TopicID != ([16]byte{}) {
			id = hex.EncodeToString(t.TopicID[:])
		}
		for _, p := range t.Partitions {
			txn.offsets[tornOffsetKey{req.Group, t.Topic, id, p.Partition}] = tornOffset{
				Group: req.Group, Topic: t.Topic, TopicID: id, Partition: p.Partition,
				Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata,
			}
		}
	}
}

// endTxn logs an EndTxn that commits, before kfake handles it, and makes
// sure that the next request empties the log.
func (w *committing) endTxn(req *kmsg.EndTxnRequest) {
	if !req.Commit {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	intent := commitIntent{ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch}
	if txn := w.offsets[req.ProducerID]; txn != nil && txn.epoch == req.ProducerEpoch {
		for _, o := range txn.offsets {
			intent.Offsets = append(intent.Offsets, o)
		}
	}
	line, err := json.Marshal(intent)
	if err != nil {
		return // a commitIntent always marshals
	}
	line = append(line, '\n')
	// Emptied first: a crash in between leaves no intent, and kfake has
	// not seen this EndTxn yet.
	if err := w.f.Truncate(0); err != nil {
		return
	}
	if _, err := w.f.WriteAt(line, 0); err != nil {
		return
	}
	if w.sync {
		w.f.Sync()
	}
	w.logged = req
	if w.watching {
		return
	}
	w.watching = true
	w.cluster.Control(func(next kmsg.Request) (kmsg.Response, error, bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if next == w.logged {
			return nil, nil, false // the EndTxn itself, on to kfake
		}
		w.f.Truncate(0)
		if w.sync {
			w.f.Sync()
		}
		w.logged, w.watching = nil, false
		w.cluster.DropControl()
		return nil, nil, false
	})
}

// readIntent returns the transaction committing.json in dataDir names,
// nil when there is none (or only part of a line: the crash came before
// the EndTxn reached kfake).
func readIntent(dataDir string) (*commitIntent, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, committingFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	line, _, complete := bytes.Cut(raw, []byte("\n"))
	if !complete {
		return nil, nil
	}
	var intent commitIntent
	if err := json.Unmarshal(line, &intent); err != nil {
		return nil, fmt.Errorf("%s: %w", committingFile, err)
	}
	return &intent, nil
}

// completeTornCommit completes, in dataDir, the commit of the transaction
// committing.json names if kfake had begun it: it appends a commit marker
// to each partition that holds the transaction's records and none, and
// commits the offsets of the transaction that are ahead of their groups'
// (commitTornOffsets). The file is removed: what it said is done.
func completeTornCommit(dataDir string) error {
	if dataDir == "" {
		return nil
	}
	intent, err := readIntent(dataDir)
	if err != nil || intent == nil {
		return err
	}
	type unmarked struct {
		dir  string
		base int64
	}
	var (
		begun   bool
		missing []unmarked
	)
	err = eachReplayedPartition(dataDir, func(_ string, _ int32, dir string, bases []int64) error {
		wrote, marked := false, false
		for _, base := range bases {
			batches, _, err := readSegment(segmentPath(dir, base))
			if err != nil {
				return err
			}
			for _, b := range batches {
				if b.producerID != intent.ProducerID || b.producerEpoch != intent.ProducerEpoch {
					continue
				}
				switch b.control {
				case notControl:
					wrote = wrote || b.transactional
				case controlCommit:
					marked, begun = true, true
				default:
					marked = true
				}
			}
		}
		if wrote && !marked {
			missing = append(missing, unmarked{dir, bases[len(bases)-1]})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !begun {
		return os.Remove(filepath.Join(dataDir, committingFile))
	}
	for _, u := range missing {
		if err := appendCommitMarker(u.dir, u.base, intent.ProducerID, intent.ProducerEpoch); err != nil {
			return fmt.Errorf("complete the commit of producer %d epoch %d in %s: %w", intent.ProducerID, intent.ProducerEpoch, u.dir, err)
		}
	}
	if err := commitTornOffsets(dataDir, intent); err != nil {
		return fmt.Errorf("complete the offsets of producer %d epoch %d: %w", intent.ProducerID, intent.ProducerEpoch, err)
	}
	return os.Remove(filepath.Join(dataDir, committingFile))
}

// appendCommitMarker appends a commit marker of producer pid at epoch to
// the segment starting at base in partition directory dir, with its index
// entry, after cutting off a torn batch at the end of the segment as
// kfake's load would.
func appendCommitMarker(dir string, base, pid int64, epoch int16) error {
	batches, valid, err := readSegment(segmentPath(dir, base))
	if err != nil {
		return err
	}
	if len(batches) == 0 {
		return errors.New("the segment holds no whole batch")
	}
	last := batches[len(batches)-1]
	marker := commitMarker(last.nextOffset(), last.leaderEpoch, pid, epoch)

	seg, err := os.OpenFile(segmentPath(dir, base), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer seg.Close()
	if err := seg.Truncate(valid); err != nil {
		return err
	}
	if _, err := seg.WriteAt(marker, valid); err != nil {
		return err
	}
	if err := seg.Sync(); err != nil {
		return err
	}
	return repairIndex(dir, base) // the marker's entry
}

// commitMarker returns a record batch at offset with one control record
// that commits the transaction of producer pid at epoch.
func commitMarker(offset int64, leaderEpoch int32, pid int64, epoch int16) []byte {
	key := kmsg.ControlRecordKey{Type: kmsg.ControlRecordKeyTypeCommit}
	value := kmsg.EndTxnMarker{}
	rec := kmsg.Record{Key: key.AppendTo(nil), Value: value.AppendTo(nil)}
	// Length counts the bytes after itself; one varint byte holds it.
	rec.Length = int32(len(rec.AppendTo(nil)) - 1)
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{
		FirstOffset:          offset,
		PartitionLeaderEpoch: leaderEpoch,
		Magic:                2,
		Attributes:           0x30, // transactional, control
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        -1,
		NumRecords:           1,
		Records:              rec.AppendTo(nil),
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32c))
	return raw
}
