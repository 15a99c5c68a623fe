package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// replayUnrestoredTxns makes the embedded broker abort, after a crash, a
// transaction that was open at a clean shutdown before the crash, as it
// aborts one the crash itself left open (see abortCrashedTxns).
//
// # Why
//
// At a clean shutdown kfake writes each partition's state to its
// snapshot.json (high watermark, last stable offset, aborted
// transactions), and the transactions still open to session_state.json.
// On start it loads a partition from its snapshot when the partition's
// segments are as the snapshot lists them, restores the open transactions
// and deletes session_state.json. If the broker then crashes before
// anything is written to such a partition, the next start loads it from
// the same snapshot, whose last stable offset the transaction holds, but
// nothing restores the transaction: nobody can end it, and its records are
// not among the aborted ones. read_committed readers stop at the stuck
// last stable offset until a transaction ends in the partition (its
// producer restarted, say), when kfake moves the last stable offset to the
// high watermark: readers then deliver the records of the transaction,
// never committed, as committed. A transaction open in several partitions
// comes back torn: aborted where records were written since the clean
// restart (kfake replays those), visible in the others once a transaction
// ends there.
//
// # How
//
// Before kfake loads the data dir, it deletes the snapshot of every
// partition that kfake would load from its snapshot (it matches the
// segments) and whose snapshot says a transaction was open (last stable
// offset below the high watermark), unless session_state.json carries an
// open transaction in that partition (kfake restores it). kfake then
// replays the partition's segments, as after a crash: it aborts the
// transaction it finds open, and abortCrashedTxns writes its markers.
// Replaying costs start-up time and what only the snapshot holds (a log
// start offset moved by DeleteRecords), as it does after any crash.
func replayUnrestoredTxns(dataDir string) error {
	if dataDir == "" {
		return nil
	}
	restored, err := restoredTxnPartitions(dataDir)
	if err != nil {
		return err
	}
	parts := filepath.Join(dataDir, "partitions")
	entries, err := os.ReadDir(parts)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		topic, partition, ok := partitionOfDir(e.Name())
		if !e.IsDir() || !ok || restored[topicPartition{topic, partition}] {
			continue
		}
		dir := filepath.Join(parts, e.Name())
		stuck, err := snapshotHoldsOpenTxn(dir)
		if err != nil {
			return err
		}
		if stuck {
			if err := os.Remove(filepath.Join(dir, "snapshot.json")); err != nil {
				return err
			}
		}
	}
	return nil
}

// topicPartition names a partition.
type topicPartition struct {
	topic     string
	partition int32
}

// partitionOfDir returns the partition whose directory is named name in
// kfake's layout: <topic, path-escaped>-<partition>.
func partitionOfDir(name string) (string, int32, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return "", 0, false
	}
	p, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil {
		return "", 0, false
	}
	topic, err := url.PathUnescape(name[:i])
	if err != nil {
		return "", 0, false
	}
	return topic, int32(p), true
}

// restoredTxnPartitions returns the partitions in which kfake will restore
// an open transaction from dataDir's session_state.json.
func restoredTxnPartitions(dataDir string) (map[topicPartition]bool, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, "session_state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var state struct {
		InProgressTxns []struct {
			TxPartFirstOffsets map[string]map[int32]int64 `json:"txPartFirstOffsets"`
		} `json:"inProgressTxns"`
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		// kfake ignores a corrupt file, restoring nothing.
		return nil, nil
	}
	restored := map[topicPartition]bool{}
	for _, txn := range state.InProgressTxns {
		for topic, parts := range txn.TxPartFirstOffsets {
			for p := range parts {
				restored[topicPartition{topic, p}] = true
			}
		}
	}
	return restored, nil
}

// snapshotHoldsOpenTxn reports whether kfake loads partition directory
// dir from its snapshot and the snapshot's last stable offset is below
// its high watermark.
func snapshotHoldsOpenTxn(dir string) (bool, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	var snap struct {
		HighWatermark    int64 `json:"high_watermark"`
		LastStableOffset int64 `json:"last_stable_offset"`
	}
	if json.Unmarshal(raw, &snap) != nil || snap.LastStableOffset >= snap.HighWatermark {
		return false, nil
	}
	bases, err := segmentsIn(dir)
	if err != nil {
		return false, fmt.Errorf("partition %s: %w", dir, err)
	}
	if len(bases) == 0 {
		return false, nil // kfake loads no snapshot without segments
	}
	return snapshotMatches(dir, bases), nil
}
