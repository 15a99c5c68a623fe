package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// batches and no control batch after them. It mirrors kfake's own
// recovery, so a transaction open at a clean shutdown, which kfake
// restores as open, is left alone.
func crashedTxns(dataDir string) ([]crashedTxn, error) {
	var crashed []crashedTxn
	err := eachReplayedPartition(dataDir, func(topic string, p int32, dir string, bases []int64) error {
		open := make(map[int64]int16)
		for _, base := range bases {
			batches, _, err := readSegment(segmentPath(dir, base))
			if err != nil {
				return err
			}
			for _, b := range batches {
				switch {
				case b.control != notControl: // a commit or abort marker
					delete(open, b.producerID)
				case b.transactional:
					if _, ok := open[b.producerID]; !ok {
						open[b.producerID] = b.producerEpoch
					}
				}
			}
		}
		for pid, epoch := range open {
			crashed = append(crashed, crashedTxn{topic, p, pid, epoch})
		}
		return nil
	})
	return crashed, err
}

// eachReplayedPartition calls fn with each partition of dataDir that kfake
// replays from its segments when it loads (those it does not load from a
// snapshot, see snapshotMatches), with the partition's directory and the
// base offsets of its segments, in order. It reads kfake's layout:
// topics.json, and partitions/<topic>-<n>/ with snapshot.json and
// <base>.dat segments of raw record batches.
func eachReplayedPartition(dataDir string, fn func(topic string, p int32, dir string, bases []int64) error) error {
	if dataDir == "" {
		return nil
	}
	topics, err := readTopics(dataDir)
	if err != nil {
		return err
	}
	for _, t := range topics {
		for p := range t.Partitions {
			dir := filepath.Join(dataDir, "partitions", fmt.Sprintf("%s-%d", url.PathEscape(t.Name), p))
			bases, err := segmentsIn(dir)
			if err != nil {
				return err
			}
			if len(bases) == 0 || snapshotMatches(dir, bases) {
				continue
			}
			if err := fn(t.Name, p, dir, bases); err != nil {
				return err
			}
		}
	}
	return nil
}

// persistedTopic is a topic as kfake's topics.json holds it.
type persistedTopic struct {
	Name string `json:"name"`
	// ID is the topic id; kfake writes it in base64, as encoding/json
	// reads a []byte.
	ID         []byte `json:"id"`
	Partitions int32  `json:"partitions"`
}

// readTopics returns the topics of dataDir's topics.json; none when there
// is no such file.
func readTopics(dataDir string) ([]persistedTopic, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, "topics.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var topics struct {
		Topics []persistedTopic `json:"topics"`
	}
	if err := json.Unmarshal(raw, &topics); err != nil {
		return nil, fmt.Errorf("topics.json: %w", err)
	}
	return topics.Topics, nil
}

// segmentsIn returns the base offsets of the segments in a partition
// directory, in order; none when the directory does not exist.
func segmentsIn(dir string) ([]int64, error) {
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
	return bases, nil
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
