package broker

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
)

// repairIndexes makes the index of every segment kfake replays from a
// data dir agree with the segment, before kfake loads it.
//
// # Why
//
// kfake writes each batch to its segment file, then the batch's entry to
// the segment's index file, whose entries are positional: the n-th entry
// is the n-th batch's. Its crash recovery takes from the index whether a
// batch was produced in a transaction. A SIGKILL between the two writes
// (a window a busy CPU widens) leaves the last batch without an entry:
// kfake then loads it as written outside any transaction, so a
// transaction the crash left open is not aborted in that partition and
// read_committed readers deliver its records as committed (the chaos
// suite found two duplicated records that way, seed 8086). Worse, every
// entry kfake appends after the restart lands one slot early, so at the
// next replay each later batch takes its predecessor's flags.
//
// # How
//
// For each segment kfake will replay, the entries are rebuilt from the
// batches themselves (leader epoch, transactional data or not, largest
// timestamp so far) and compared with the index file's: where an entry is
// missing, unreadable or says otherwise, the index file is rewritten
// whole, atomically. Entries past the segment's last whole batch (a crash
// after the index write of a batch whose segment write was cut) are left
// for kfake, which truncates them.
func repairIndexes(dataDir string) error {
	return eachReplayedPartition(dataDir, func(_ string, _ int32, dir string, bases []int64) error {
		for _, base := range bases {
			if err := repairIndex(dir, base); err != nil {
				return err
			}
		}
		return nil
	})
}

// repairIndex rewrites the index of the segment starting at base in
// partition directory dir when it does not agree with the segment.
func repairIndex(dir string, base int64) error {
	batches, _, err := readSegment(segmentPath(dir, base))
	if err != nil {
		return err
	}
	want := segmentIndex(batches)
	have, err := os.ReadFile(indexPath(dir, base))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if indexAgrees(have, want) {
		return nil
	}
	return writeFileAtomic(indexPath(dir, base), want)
}

// indexAgrees reports whether index file content have holds, for each
// entry of want, a readable entry with the same leader epoch and
// transaction flag.
func indexAgrees(have, want []byte) bool {
	if len(have) < len(want) {
		return false
	}
	for i := 0; i < len(want); i += indexEntrySize {
		h, w := have[i:i+indexEntrySize], want[i:i+indexEntrySize]
		if h[0] != w[0] || !bytes.Equal(h[2:6], w[2:6]) || h[14] != w[14] || !indexEntryValid(h) {
			return false
		}
	}
	return true
}

// indexEntryValid reports whether an index entry's checksum byte matches.
func indexEntryValid(e []byte) bool {
	return e[1] == byte(crc32.Checksum(e[2:indexEntrySize], crc32c))
}

// writeFileAtomic replaces the file at path with data: a crash leaves the
// old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".sluice-tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
