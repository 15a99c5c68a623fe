package broker

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestConformanceAbortedAcrossSegmentsAndRestarts: Kafka keeps a
// partition's aborted transactions in an index that spans its log
// segments and survives restarts, so a read_committed consumer skips
// aborted records wherever they lie: in a transaction whose records span
// segments, after a clean restart and after a crash.
//
// The interleaved log of TestConformanceCutFetchesDeliverExactlyTheCommitted,
// two partitions, on a data dir, with 1 KiB segments (the topic's
// segment.bytes: kfake rolls a segment once it holds that much), so that
// aborted transactions span segments. It is read with fetches of one
// batch, of about one segment and of everything: on the broker that wrote
// it; after Close and Start on the same dir (kfake loads its snapshot);
// and on a copy of the dir taken while that broker ran (what a kill -9
// leaves: kfake replays the segments and rebuilds the aborted
// transactions from their markers).
func TestConformanceAbortedAcrossSegmentsAndRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	dir, crashed := t.TempDir(), t.TempDir()
	const topic = "seg"
	c, addr := startConformance(t, Config{DataDir: dir}, allFixes)
	createConformanceTopic(ctx, t, addr, topic, 2, map[string]*string{"segment.bytes": kadm.StringPtr("1024")})
	log := writeInterleavedTxns(ctx, t, addr, topic, 2, 5, 2)

	spanning := 0
	for p := range int32(2) {
		bases := segmentBases(t, dir, topic, p)
		require.Greater(t, len(bases), 3, "partition %d: segments %v", p, bases)
		for _, txn := range log.abortedIn(p) {
			if segmentOf(bases, txn[0].offset) != segmentOf(bases, txn[len(txn)-1].offset) {
				spanning++
			}
		}
	}
	require.Positive(t, spanning, "no aborted transaction spans two segments")

	readAll := func(addr, when string) {
		t.Helper()
		for _, lim := range []fetchLimits{{1, 1}, {1024, 1024}, {1 << 20, 1 << 20}} {
			require.Empty(t, logDiff(log.committed(), readCommittedLog(ctx, t, addr, log, lim)), "%s, read with %v", when, lim)
		}
	}
	readAll(addr, "on the broker that wrote it")
	copyDir(t, dir, crashed)
	c.Close()
	c, addr = startConformance(t, Config{DataDir: dir}, allFixes)
	readAll(addr, "after a restart")
	c.Close()
	_, addr = startConformance(t, Config{DataDir: crashed}, allFixes)
	readAll(addr, "after a crash")
}

// TestConformanceCrashAbortsOpenTransaction: after a crash, Kafka's
// transaction coordinator aborts a transaction the crash left open and
// writes its abort markers: the last stable offset (LSO) moves past it,
// read_committed consumers never deliver its records, and a later
// transaction of the same transactional id (same producer id, a later
// epoch) is delivered once committed.
//
// The crash: a copy of a broker's data dir taken while producer "crasher"
// has a transaction open in both partitions, followed by another
// producer's committed records (kfake writes through, so the copy is what
// kill -9 leaves); in case "open at a clean stop", the broker had been
// stopped cleanly with the transaction open and started again (restoring
// it) before the copy. On a broker started on the copy: the LSO of both
// partitions equals the high watermark; an abort marker of crasher
// follows its open records; crasher restarts and commits a transaction
// in both partitions; read_committed readers, with one-batch and large
// fetches, deliver exactly the committed records.
//
// kfake alone (without recover.go) aborts the transaction only in memory,
// without markers: its LSO is right and the open records are skipped, but
// its readers with large fetches also skip crasher's later committed
// records (a reader told that a producer's transaction was aborted skips
// that producer's batches until it reads an abort marker). For the
// transaction open at a clean stop, see TestTxnOpenAtCleanStopAbortedAfterCrash.
func TestConformanceCrashAbortsOpenTransaction(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cleanStop   bool
		fix         fixes
		withMarkers bool
	}{
		{"corrected", false, allFixes, true},
		{"kfake alone", false, allFixes &^ fixRecovery, false},
		{"open at a clean stop", true, allFixes, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			image, log, open := crashImageWithOpenTxn(ctx, t, tc.cleanStop)
			_, addr := startConformance(t, Config{DataDir: image}, tc.fix)
			admin := conformanceClient(t, addr)
			topicID := topicIDOf(ctx, t, admin, log.topic)

			ends := listEnds(ctx, t, admin, log.topic)
			require.Equal(t, ends.hwm, ends.lso, "the LSO passes the transaction the crash left open")
			for p, last := range open.last {
				_, batches := fetchOnce(ctx, t, admin, log.topic, topicID, p, 0, isolationReadUncommitted, 1<<20)
				marked := slices.ContainsFunc(batches, func(b kmsg.RecordBatch) bool {
					return b.FirstOffset > last && isMarker(b, open.pid, false)
				})
				require.Equal(t, tc.withMarkers, marked, "partition %d: an abort marker of producer %d after its open records", p, open.pid)
			}

			// crasher restarts and commits.
			crasher := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID(open.txnID))...)
			require.NoError(t, crasher.BeginTransaction())
			var after []*kgo.Record
			for p := range int32(2) {
				after = append(after, produceOne(ctx, t, crasher, log.topic, p, conformanceValue("crasher.after.commit", int(p), 200)))
			}
			require.NoError(t, crasher.EndTransaction(ctx, kgo.TryCommit))
			require.Equal(t, open.pid, after[0].ProducerID, "crasher kept its producer id")
			log.add(true, "crasher.after", after...)
			log.end(ctx, t, conformanceClient(t, addr, singleBatches()...), 2)

			var diffs []string
			for _, lim := range []fetchLimits{{1, 1}, {1 << 20, 1 << 20}} {
				if d := logDiff(log.committed(), readCommittedLog(ctx, t, addr, log, lim)); d != "" {
					diffs = append(diffs, fmt.Sprintf("%v: %s", lim, d))
				}
			}
			if tc.fix == allFixes {
				require.Empty(t, diffs, "read_committed after the crash")
				return
			}
			require.NotEmpty(t, diffs, "kfake alone delivered crasher's later transaction: recover.go may no longer be needed")
			t.Logf("kfake alone: %s", strings.Join(diffs, "; "))
		})
	}
}

// openTxn is a transaction a crash image holds open.
type openTxn struct {
	txnID string
	pid   int64
	last  map[int32]int64 // its last offset in each partition
}

// crashImageWithOpenTxn writes to topic "crash" (two partitions) of a
// broker with a data dir: a committed transaction of producer "crasher",
// an open one of it, and a committed transaction of producer "other"
// after it in both partitions. It returns a copy of the data dir taken
// while crasher's transaction is open (what a kill -9 leaves, kfake
// writing through), the log, and the open transaction. With cleanStop,
// the broker is closed and started again on its data dir before the
// copy, which it restores the open transaction from.
func crashImageWithOpenTxn(ctx context.Context, t *testing.T, cleanStop bool) (string, *txnLog, openTxn) {
	t.Helper()
	dir, image := t.TempDir(), t.TempDir()
	c, addr := startConformance(t, Config{DataDir: dir}, allFixes)
	defer c.Close()
	log := &txnLog{topic: "crash"}
	createConformanceTopic(ctx, t, addr, log.topic, 2, nil)
	open := openTxn{txnID: "crasher", last: map[int32]int64{}}
	crasher := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID(open.txnID))...)
	other := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("other"))...)

	txn := func(cl *kgo.Client, kind string, commit bool) []*kgo.Record {
		require.NoError(t, cl.BeginTransaction())
		var rs []*kgo.Record
		for i, p := range []int32{0, 1, 0, 1} {
			rs = append(rs, produceOne(ctx, t, cl, log.topic, p, conformanceValue(kind, i, 300)))
		}
		if commit {
			require.NoError(t, cl.EndTransaction(ctx, kgo.TryCommit))
		}
		return rs
	}
	log.add(true, "crasher.before", txn(crasher, "crasher.before.commit", true)...)
	opened := txn(crasher, "crasher.open.crash", false)
	log.add(false, "crasher.open", opened...)
	log.add(true, "other", txn(other, "other.commit", true)...)
	for _, r := range opened {
		open.pid = r.ProducerID
		open.last[r.Partition] = max(open.last[r.Partition], r.Offset)
	}
	// A producer closed after its broker waits a second for it in vain.
	// crasher's transaction stays open: nobody ends it.
	crasher.Close()
	other.Close()
	if cleanStop {
		c.Close()
		c, addr = startConformance(t, Config{DataDir: dir}, allFixes)
		defer c.Close()
	}
	ends := listEnds(ctx, t, conformanceClient(t, addr), log.topic)
	for p := range int32(2) {
		require.Less(t, ends.lso[p], ends.hwm[p], "partition %d: crasher's transaction holds the LSO", p)
	}
	copyDir(t, dir, image)
	return image, log, open
}

// clone returns a copy of l that can be added to without changing l.
func (l *txnLog) clone() *txnLog {
	return &txnLog{topic: l.topic, records: slices.Clone(l.records)}
}

// abortedIn returns the records of each aborted transaction in partition
// p, in offset order.
func (l *txnLog) abortedIn(p int32) [][]logRecord {
	byTxn := map[string][]logRecord{}
	for _, r := range l.records {
		if !r.visible && r.txn != "" && r.partition == p {
			byTxn[r.txn] = append(byTxn[r.txn], r)
		}
	}
	var out [][]logRecord
	for _, rs := range byTxn {
		slices.SortFunc(rs, func(a, b logRecord) int { return cmp.Compare(a.offset, b.offset) })
		out = append(out, rs)
	}
	return out
}

// segmentBases returns the base offsets of the log segments of partition p
// of topic in kfake's data dir, in order (its layout: partitions/<topic>-<p>/
// <base>.dat).
func segmentBases(t *testing.T, dataDir, topic string, p int32) []int64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "partitions", fmt.Sprintf("%s-%d", url.PathEscape(topic), p)))
	require.NoError(t, err)
	var bases []int64
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".dat"); ok {
			base, err := strconv.ParseInt(name, 10, 64)
			require.NoError(t, err)
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	return bases
}

// segmentOf returns the index of the segment of bases that holds offset.
func segmentOf(bases []int64, offset int64) int {
	i, found := slices.BinarySearch(bases, offset)
	if found {
		return i
	}
	return i - 1
}

// copyDir copies the files under src to dst, as they are at this moment.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}))
}
