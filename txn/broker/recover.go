package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// crashedTxn is a transaction left open in one partition by a crash.
type crashedTxn struct {
	topic      string
	partition  int32
	producerID int64
	epoch      int16
}

// crashedTxns returns the transactions kfake will abort when it loads
// dataDir: in each partition it recovers from a crash, those with data
// batches and no control batch after them. It reads kfake's layout
// (topics.json, and partitions/<topic>-<n>/ with snapshot.json and
// <base>.dat segments of raw record batches) and mirrors kfake's own
// recovery, so a transaction open at a clean shutdown, which kfake
// restores as open, is left alone.
func crashedTxns(dataDir string) ([]crashedTxn, error) {
	if dataDir == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "topics.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var topics struct {
		Topics []struct {
			Name       string `json:"name"`
			Partitions int32  `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(raw, &topics); err != nil {
		return nil, fmt.Errorf("topics.json: %w", err)
	}
	var crashed []crashedTxn
	for _, t := range topics.Topics {
		for p := range t.Partitions {
			dir := filepath.Join(dataDir, "partitions", fmt.Sprintf("%s-%d", url.PathEscape(t.Name), p))
			open, err := openTxns(dir)
			if err != nil {
				return nil, err
			}
			for pid, epoch := range open {
				crashed = append(crashed, crashedTxn{t.Name, p, pid, epoch})
			}
		}
	}
	return crashed, nil
}

// openTxns scans the segments of one partition directory in offset order
// and returns the producers whose last transactional data batch has no
// control batch after it, with that batch's epoch. It returns none for a
// partition kfake loads from its snapshot, without crash recovery.
func openTxns(dir string) (map[int64]int16, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".dat")
		if !ok {
			continue
		}
		if base, err := strconv.ParseInt(name, 10, 64); err == nil {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	if snapshotMatches(dir, bases) {
		return nil, nil
	}
	open := make(map[int64]int16)
	for _, base := range bases {
		if err := scanSegment(segmentPath(dir, base), open); err != nil {
			return nil, err
		}
	}
	return open, nil
}

// segmentPath returns the path of the segment file starting at base.
func segmentPath(dir string, base int64) string {
	return filepath.Join(dir, strconv.FormatInt(base, 10)+".dat")
}

// snapshotMatches reports whether dir's snapshot.json lists exactly its
// segments with their current sizes, as a clean shutdown leaves them:
// kfake's test for loading a partition without crash recovery.
func snapshotMatches(dir string, bases []int64) bool {
	raw, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	if err != nil {
		return false
	}
	var snap struct {
		Segments []struct {
			Base int64 `json:"base_offset"`
			Size int64 `json:"size"`
		} `json:"segments"`
	}
	if json.Unmarshal(raw, &snap) != nil || len(snap.Segments) != len(bases) {
		return false
	}
	for i, seg := range snap.Segments {
		info, err := os.Stat(segmentPath(dir, bases[i]))
		if err != nil || seg.Base != bases[i] || info.Size() != seg.Size {
			return false
		}
	}
	return true
}

// scanSegment reads the record batch headers of one segment file into open.
// A torn batch at the end (a crash mid-write) ends the scan, as it ends
// kfake's load.
func scanSegment(path string, open map[int64]int16) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	// Batch header fields: Length at 8, Attributes at 21, ProducerID at 43,
	// ProducerEpoch at 51; the header is 61 bytes, the batch 12+Length.
	var h [61]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil // EOF, or a torn header
		}
		length := int(binary.BigEndian.Uint32(h[8:]))
		attrs := binary.BigEndian.Uint16(h[21:])
		pid := int64(binary.BigEndian.Uint64(h[43:]))
		switch {
		case attrs&0x20 != 0: // control: a commit or abort marker
			delete(open, pid)
		case attrs&0x10 != 0: // transactional data
			if _, ok := open[pid]; !ok {
				open[pid] = int16(binary.BigEndian.Uint16(h[51:]))
			}
		}
		if _, err := r.Discard(12 + length - len(h)); err != nil {
			return nil // a torn batch
		}
	}
}

// abortCrashedTxns writes an abort marker for each crashed transaction
// through the broker at addr.
//
// # Why kfake's own abort is not enough
//
// kfake aborts a transaction a crash left open only in memory and writes
// no marker. A read_committed client told that a producer's transaction
// was aborted skips that producer's later batches in the partition until
// it reads an abort marker. A transactional id restarted after the crash
// keeps its producer id, so without the marker its next committed records
// in that partition are silently hidden from read_committed readers. The
// markers go in before Start returns, so before anyone is told the
// broker is ready; a client already retrying could slip a produce in
// within those milliseconds.
func abortCrashedTxns(ctx context.Context, addr string, crashed []crashedTxn) error {
	if len(crashed) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("broker: abort transactions open at the crash: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	for _, txn := range crashed {
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.Committed = txn.producerID, txn.epoch, false
		t := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		t.Topic, t.Partitions = txn.topic, []int32{txn.partition}
		m.Topics = append(m.Topics, t)
		req.Markers = append(req.Markers, m)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("broker: abort transactions open at the crash: %w", err)
	}
	for _, m := range resp.Markers {
		for _, t := range m.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return fmt.Errorf("broker: abort the transaction of producer %d open at the crash in %s/%d: %w", m.ProducerID, t.Topic, p.Partition, err)
				}
			}
		}
	}
	return nil
}
