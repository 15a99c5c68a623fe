package broker

// The conformance suite checks, in the manner of Jepsen's Kafka checks, the
// transactional guarantees sluice relies on, against the embedded broker
// as Start sets it up (start with allFixes), and, where a correction is
// involved, against kfake without it, to show the check can fail:
//
//   - conformance_test.go: read_committed under fetches cut at many sizes;
//     the last stable offset and the high watermark;
//   - conformance_log_test.go: aborted transactions across log segments
//     and restarts; a crash with a transaction open;
//   - conformance_fence_test.go: KIP-447 generation fencing of offset
//     commits, zombie producers, require-stable offset fetches and
//     transaction timeouts;
//   - conformance_kcat_test.go: the read_committed checks read by
//     librdkafka (kcat), whose records must match franz-go's.
//
// The logs are written record by record, each record a batch of its own of
// known size (uncompressed), so that the byte limits of a fetch fall
// between batches of a partition. Nothing waits for a time: readers read
// until they have delivered a record known to end the log, and every wait
// is on a condition with a deadline.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conformanceTimeout bounds each conformance test (each subtest of the
// larger ones).
const conformanceTimeout = 60 * time.Second

// isolationReadUncommitted is the isolation level of a read_uncommitted
// fetch (isolationReadCommitted that of a read_committed one).
const isolationReadUncommitted = 0

// TestConformanceCutFetchesDeliverExactlyTheCommitted: a read_committed
// consumer delivers exactly the committed records (and those written
// outside transactions), each once, in offset order per partition, and no
// record of an aborted transaction, whatever byte limits it fetches with.
// Kafka guarantees this because every partition it returns records of
// comes with the aborted transactions those records overlap.
//
// The log: three producers' transactions open together, their records
// interleaved over three partitions with non-transactional ones, ended in
// random order, about half aborted; every record a batch of its own of 90
// to 700 bytes. It is read by franz-go from the start with the limits of
// conformanceSweep: per request (FetchMaxBytes) and per partition
// (FetchMaxPartitionBytes), from 1 byte (below one batch) to 64 MiB (more
// than the log). kfake alone delivers aborted records at some of them.
func TestConformanceCutFetchesDeliverExactlyTheCommitted(t *testing.T) {
	for _, tc := range []struct {
		name string
		fix  fixes
	}{
		{"corrected", allFixes},
		{"kfake alone", allFixes &^ fixFetch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			_, addr := startConformance(t, Config{}, tc.fix)
			createConformanceTopic(ctx, t, addr, "cut", 3, nil)
			log := writeInterleavedTxns(ctx, t, addr, "cut", 3, 6, 1)
			want := log.committed()

			var wrong []string
			for _, lim := range conformanceSweep() {
				got := readCommittedLog(ctx, t, addr, log, lim)
				if d := logDiff(want, got); d != "" {
					wrong = append(wrong, fmt.Sprintf("%v: %s", lim, d))
				}
			}
			if tc.fix == allFixes {
				require.Empty(t, wrong, "read_committed delivered other than the committed records")
				return
			}
			require.NotEmpty(t, wrong, "kfake alone delivered exactly the committed records at every size: the sweep no longer cuts a fetch where kfake drops the aborted transactions")
			t.Logf("kfake alone, %d of %d fetch sizes wrong, e.g. %s", len(wrong), len(conformanceSweep()), wrong[0])
		})
	}
}

// TestConformanceLastStableOffset: Kafka's last stable offset (LSO) of a
// partition is the first offset of its earliest open transaction, or the
// high watermark (HWM) when none is open. ListOffsets with read_committed
// returns the LSO and with read_uncommitted the HWM; a read_committed
// fetch returns the LSO and no record at or past it, while the HWM moves
// on with later records; when the transaction ends, its marker is written
// and the LSO moves past it, to the next open transaction's first offset
// or to the HWM.
//
// Checked with two producers' overlapping transactions (a committed, b
// aborted) and a non-transactional record written while a is open, over
// two partitions: through kadm's ListCommittedOffsets and ListEndOffsets,
// through single fetches at the boundary (which also show the records are
// there for read_uncommitted), and by franz-go readers of the whole log.
func TestConformanceLastStableOffset(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	_, addr := startConformance(t, Config{}, allFixes)
	const topic = "lso"
	createConformanceTopic(ctx, t, addr, topic, 2, nil)
	admin := conformanceClient(t, addr)
	plain := conformanceClient(t, addr, singleBatches()...)
	a := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("lso-a"))...)
	b := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("lso-b"))...)
	log := &txnLog{topic: topic}

	// A committed transaction first: 3 records in 0, 1 in 1.
	require.NoError(t, a.BeginTransaction())
	var before []*kgo.Record
	for i, p := range []int32{0, 0, 0, 1} {
		before = append(before, produceOne(ctx, t, a, topic, p, conformanceValue("a.before.commit", i, 100)))
	}
	require.NoError(t, a.EndTransaction(ctx, kgo.TryCommit))
	log.add(true, "a.before", before...)
	end := listEnds(ctx, t, admin, topic)
	for p := range int32(2) {
		require.Equal(t, end.hwm[p], end.lso[p], "partition %d: no transaction is open", p)
	}

	// a opens a transaction in both partitions; a record outside any
	// transaction follows in 0.
	require.NoError(t, a.BeginTransaction())
	a0 := produceOne(ctx, t, a, topic, 0, conformanceValue("a.open.commit", 0, 100))
	a1 := produceOne(ctx, t, a, topic, 1, conformanceValue("a.open.commit", 1, 100))
	outside := produceOne(ctx, t, plain, topic, 0, conformanceValue("plain", 0, 100))
	end = listEnds(ctx, t, admin, topic)
	require.Equal(t, map[int32]int64{0: a0.Offset, 1: a1.Offset}, end.lso, "LSO: a's first offsets")
	require.Equal(t, map[int32]int64{0: outside.Offset + 1, 1: a1.Offset + 1}, end.hwm, "HWM: past every record")
	topicID := topicIDOf(ctx, t, admin, topic)
	for p, first := range map[int32]int64{0: a0.Offset, 1: a1.Offset} {
		requireFetchStopsAt(ctx, t, admin, topic, topicID, p, end.hwm[p], first)
	}

	// b opens a transaction in 0 behind a's; a commits: the LSO of 0
	// moves to b's first offset, that of 1 to its HWM.
	require.NoError(t, b.BeginTransaction())
	b0 := produceOne(ctx, t, b, topic, 0, conformanceValue("b.open.abort", 0, 100))
	require.NoError(t, a.EndTransaction(ctx, kgo.TryCommit))
	log.add(true, "a.open", a0, a1)
	log.add(true, "", outside)
	end = listEnds(ctx, t, admin, topic)
	require.Equal(t, b0.Offset, end.lso[0], "LSO of 0: b's first offset once a committed")
	require.Greater(t, end.hwm[0], b0.Offset+1, "HWM of 0: past a's commit marker")
	require.Equal(t, end.hwm[1], end.lso[1], "LSO of 1: its HWM once a committed")
	require.Equal(t, a1.Offset+2, end.hwm[1], "partition 1: a's record, then its commit marker")
	requireFetchStopsAt(ctx, t, admin, topic, topicID, 0, end.hwm[0], b0.Offset)
	requireFetchStopsAt(ctx, t, admin, topic, topicID, 1, end.hwm[1], end.hwm[1])

	// b aborts: the LSO of 0 moves past its marker, to the HWM, and the
	// fetch from b's first offset names b's transaction as aborted.
	require.NoError(t, b.EndTransaction(ctx, kgo.TryAbort))
	log.add(false, "b.open", b0)
	end = listEnds(ctx, t, admin, topic)
	require.Equal(t, end.hwm[0], end.lso[0], "LSO of 0: its HWM once b aborted")
	part, batches := fetchOnce(ctx, t, admin, topic, topicID, 0, b0.Offset, isolationReadCommitted, 1<<20)
	require.Equal(t, end.hwm[0], part.LastStableOffset)
	require.True(t, slices.ContainsFunc(part.AbortedTransactions, func(at kmsg.FetchResponseTopicPartitionAbortedTransaction) bool {
		return at.ProducerID == b0.ProducerID && at.FirstOffset == b0.Offset
	}), "the fetch of b's records names b's transaction as aborted: %+v", part.AbortedTransactions)
	require.True(t, isMarker(batches[len(batches)-1], b0.ProducerID, false), "the last batch of 0 is b's abort marker")

	// Readers of the whole log get a's records and the plain one, not b's.
	log.end(ctx, t, plain, 2)
	for _, lim := range []fetchLimits{{1, 1}, {1 << 20, 1 << 20}} {
		require.Empty(t, logDiff(log.committed(), readCommittedLog(ctx, t, addr, log, lim)), "read with %v", lim)
	}
}

// requireFetchStopsAt checks with single fetches of partition p that a
// read_committed fetch from the start reports LSO lso and HWM hwm and
// returns every batch below lso and none at or past it, and that a
// read_uncommitted one returns the batches up to hwm.
func requireFetchStopsAt(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, topicID [16]byte, p int32, hwm, lso int64) {
	t.Helper()
	part, batches := fetchOnce(ctx, t, cl, topic, topicID, p, 0, isolationReadCommitted, 1<<20)
	require.Equal(t, lso, part.LastStableOffset, "partition %d: LSO of a read_committed fetch", p)
	require.Equal(t, hwm, part.HighWatermark, "partition %d: HWM of a read_committed fetch", p)
	require.NotEmpty(t, batches)
	require.Equal(t, lso, nextOffset(batches[len(batches)-1]), "partition %d: read_committed returns every batch below the LSO, none past it", p)
	_, batches = fetchOnce(ctx, t, cl, topic, topicID, p, lso, isolationReadCommitted, 1<<20)
	require.Empty(t, batches, "partition %d: read_committed returns nothing from the LSO", p)
	_, batches = fetchOnce(ctx, t, cl, topic, topicID, p, 0, isolationReadUncommitted, 1<<20)
	require.Equal(t, hwm, nextOffset(batches[len(batches)-1]), "partition %d: read_uncommitted returns every batch up to the HWM", p)
}

// startConformance starts an embedded broker with the corrections fix,
// closed when t ends (Close may also be called before), and returns it
// with its address.
func startConformance(t *testing.T, cfg Config, fix fixes) (*kfake.Cluster, string) {
	t.Helper()
	c, addr, err := start(cfg, fix)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, addr
}

// createConformanceTopic creates topic with partitions partitions and the
// topic configs.
func createConformanceTopic(ctx context.Context, t *testing.T, addr, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resps, err := kadm.NewClient(conformanceClient(t, addr)).CreateTopics(ctx, partitions, 1, configs, topic)
	require.NoError(t, err)
	require.NoError(t, resps.Error())
}

// conformanceClient returns a client of the broker at addr, closed when t
// ends.
func conformanceClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// singleBatches are producer options under which a record produced with
// produceOne is a batch of its own, uncompressed, in the partition the
// record names: its size on the log follows from its value's.
func singleBatches() []kgo.Opt {
	return []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	}
}

// produceOne produces one record to partition p of topic and returns it,
// with its offset.
func produceOne(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, p int32, value string) *kgo.Record {
	t.Helper()
	r := &kgo.Record{Topic: topic, Partition: p, Value: []byte(value)}
	require.NoError(t, cl.ProduceSync(ctx, r).FirstErr(), "produce %.40s to %s/%d", value, topic, p)
	return r
}

// conformanceValue is the value of the n-th record of kind, padded with
// dots to size bytes. Values have no spaces or newlines: kcat prints them
// one per line.
func conformanceValue(kind string, n, size int) string {
	v := fmt.Sprintf("%s.%d.", kind, n)
	return v + strings.Repeat(".", max(0, size-len(v)))
}

// logRecord is a record of a conformance log.
type logRecord struct {
	partition int32
	offset    int64
	value     string
	txn       string // the transaction it was written in; "" outside any
	visible   bool   // committed, or written outside a transaction
}

func (r logRecord) String() string {
	return fmt.Sprintf("%d@%d %s", r.partition, r.offset, strings.TrimRight(r.value, "."))
}

// same reports whether r and o are the same record as a reader sees it.
func (r logRecord) same(o logRecord) bool {
	return r.partition == o.partition && r.offset == o.offset && r.value == o.value
}

// txnLog is what a conformance log holds, as written.
type txnLog struct {
	topic   string
	records []logRecord
}

// add records rs, written in transaction txn ("" for none), as visible
// to read_committed readers or not.
func (l *txnLog) add(visible bool, txn string, rs ...*kgo.Record) {
	for _, r := range rs {
		l.records = append(l.records, logRecord{partition: r.Partition, offset: r.Offset, value: string(r.Value), txn: txn, visible: visible})
	}
}

// end ends every one of partitions partitions of the log with a record
// written outside any transaction through plain, so that a reader that
// delivered it has been past everything before.
func (l *txnLog) end(ctx context.Context, t *testing.T, plain *kgo.Client, partitions int32) {
	t.Helper()
	for p := range partitions {
		l.add(true, "", produceOne(ctx, t, plain, l.topic, p, conformanceValue("end", int(p), 40)))
	}
}

// committed returns the records a read_committed reader must deliver, per
// partition in offset order.
func (l *txnLog) committed() map[int32][]logRecord {
	out := map[int32][]logRecord{}
	for _, r := range l.records {
		if r.visible {
			out[r.partition] = append(out[r.partition], r)
		}
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b logRecord) int { return cmp.Compare(a.offset, b.offset) })
	}
	return out
}

// lastCommitted returns each partition's last committed offset.
func (l *txnLog) lastCommitted() map[int32]int64 {
	last := map[int32]int64{}
	for p, rs := range l.committed() {
		last[p] = rs[len(rs)-1].offset
	}
	return last
}

// writeInterleavedTxns writes rounds rounds to topic's partitions
// partitions. In each round three producers' transactions are open
// together; their records, interleaved at random over the partitions with
// non-transactional ones, are each a batch of its own of 90 to 700 bytes;
// the transactions end in random order, each committed or aborted as drawn
// when it began. Each partition ends with a record outside any
// transaction. seed fixes every draw.
func writeInterleavedTxns(ctx context.Context, t *testing.T, addr, topic string, partitions int32, rounds int, seed uint64) *txnLog {
	t.Helper()
	const producers, records = 3, 12
	rng := rand.New(rand.NewPCG(seed, 0))
	log := &txnLog{topic: topic}
	// Closed on return: a producer closed after its broker (a test that
	// restarts it) waits a second for it in vain.
	newProducer := func(opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(addr)}, singleBatches()...), opts...)...)
		require.NoError(t, err)
		return cl
	}
	plain := newProducer()
	defer plain.Close()
	var txnal []*kgo.Client
	for i := range producers {
		cl := newProducer(kgo.TransactionalID(fmt.Sprintf("%s-txn-%d", topic, i)))
		defer cl.Close()
		txnal = append(txnal, cl)
	}
	var commits, aborts int
	for round := range rounds {
		commit := make([]bool, producers)
		written := make([][]*kgo.Record, producers)
		for i, cl := range txnal {
			commit[i] = rng.IntN(2) == 0
			require.NoError(t, cl.BeginTransaction())
		}
		for n := range records {
			p := rng.Int32N(partitions)
			size := 20 + rng.IntN(600)
			if rng.IntN(6) == 0 {
				log.add(true, "", produceOne(ctx, t, plain, topic, p, conformanceValue(fmt.Sprintf("plain.r%d", round), n, size)))
				continue
			}
			i := rng.IntN(producers)
			kind := fmt.Sprintf("txn%d.r%d.%s", i, round, map[bool]string{true: "commit", false: "abort"}[commit[i]])
			written[i] = append(written[i], produceOne(ctx, t, txnal[i], topic, p, conformanceValue(kind, n, size)))
		}
		for _, i := range rng.Perm(producers) {
			require.NoError(t, txnal[i].EndTransaction(ctx, kgo.TransactionEndTry(commit[i])))
			log.add(commit[i], fmt.Sprintf("txn%d.r%d", i, round), written[i]...)
			if len(written[i]) > 0 && commit[i] {
				commits++
			} else if len(written[i]) > 0 {
				aborts++
			}
		}
	}
	require.Positive(t, commits, "seed %d: no committed transaction", seed)
	require.Positive(t, aborts, "seed %d: no aborted transaction", seed)
	log.end(ctx, t, plain, partitions)
	return log
}

// fetchLimits are a reader's byte limits, per fetch request (franz-go's
// FetchMaxBytes, librdkafka's fetch.max.bytes) and per partition
// (FetchMaxPartitionBytes, max.partition.fetch.bytes).
type fetchLimits struct{ request, partition int32 }

func (l fetchLimits) String() string { return fmt.Sprintf("%d/%d bytes", l.request, l.partition) }

// conformanceSweep returns the limits the cut-fetch check reads with: at
// each size, cut per request (franz-go caps the partition limit to it), per
// partition only, and per partition at a third of the request's.
func conformanceSweep() []fetchLimits {
	var out []fetchLimits
	for _, size := range []int32{1, 100, 250, 500, 750, 1000, 1500, 2500, 4000, 8000, 16000, 1 << 20} {
		out = append(out, fetchLimits{size, size}, fetchLimits{64 << 20, size}, fetchLimits{size, max(1, size/3)})
	}
	return out
}

// readCommittedLog reads log's topic from the start with franz-go,
// read_committed and the limits lim, until every partition has delivered
// its last committed record, and returns what was delivered, per partition
// in the order delivered.
func readCommittedLog(ctx context.Context, t *testing.T, addr string, log *txnLog, lim fetchLimits) map[int32][]logRecord {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(log.topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(lim.request), kgo.FetchMaxPartitionBytes(lim.partition))
	require.NoError(t, err)
	defer cl.Close()
	last := log.lastCommitted()
	got := map[int32][]logRecord{}
	done := func() bool {
		for p, off := range last {
			rs := got[p]
			if len(rs) == 0 || rs[len(rs)-1].offset < off {
				return false
			}
		}
		return true
	}
	for !done() {
		f := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read with %v: delivered %v of %v before the deadline", lim, lastOffsets(got), last)
		f.EachError(func(topic string, p int32, err error) { require.NoError(t, err, "fetch %s/%d", topic, p) })
		f.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], logRecord{partition: r.Partition, offset: r.Offset, value: string(r.Value)})
		})
	}
	return got
}

// lastOffsets returns the last offset of each partition's records.
func lastOffsets(rs map[int32][]logRecord) map[int32]int64 {
	out := map[int32]int64{}
	for p, prs := range rs {
		if len(prs) > 0 {
			out[p] = prs[len(prs)-1].offset
		}
	}
	return out
}

// logDiff describes how the records got, as delivered, depart from want,
// per partition: records delivered that are not committed, committed ones
// missing, records delivered twice or out of offset order. It returns ""
// when got is exactly want.
func logDiff(want, got map[int32][]logRecord) string {
	var out []string
	parts := map[int32]bool{}
	for p := range want {
		parts[p] = true
	}
	for p := range got {
		parts[p] = true
	}
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		w, g := want[p], got[p]
		if slices.EqualFunc(w, g, logRecord.same) {
			continue
		}
		wanted := map[int64]logRecord{}
		for _, r := range w {
			wanted[r.offset] = r
		}
		seen := map[int64]bool{}
		var extra, missing, twice []logRecord
		unordered := 0
		for i, r := range g {
			if wr, ok := wanted[r.offset]; !ok || !wr.same(r) {
				extra = append(extra, r)
			}
			if seen[r.offset] {
				twice = append(twice, r)
			}
			seen[r.offset] = true
			if i > 0 && r.offset <= g[i-1].offset {
				unordered++
			}
		}
		for _, r := range w {
			if !seen[r.offset] {
				missing = append(missing, r)
			}
		}
		out = append(out, fmt.Sprintf("partition %d: %d of %d delivered not committed %s, %d committed missing %s, %d twice, %d out of order",
			p, len(extra), len(g), firstFew(extra), len(missing), firstFew(missing), len(twice), unordered))
	}
	return strings.Join(out, "; ")
}

// firstFew lists the first records of rs.
func firstFew(rs []logRecord) string {
	if len(rs) > 3 {
		return fmt.Sprintf("%v...", rs[:3])
	}
	return fmt.Sprint(rs)
}

// logEnds are the last stable offsets and high watermarks of a topic's
// partitions.
type logEnds struct{ lso, hwm map[int32]int64 }

// listEnds lists topic's ends with ListOffsets: read_committed for the
// LSO, read_uncommitted for the HWM.
func listEnds(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) logEnds {
	t.Helper()
	adm := kadm.NewClient(cl)
	ends := logEnds{lso: map[int32]int64{}, hwm: map[int32]int64{}}
	for _, l := range []struct {
		list func(context.Context, ...string) (kadm.ListedOffsets, error)
		into map[int32]int64
	}{{adm.ListCommittedOffsets, ends.lso}, {adm.ListEndOffsets, ends.hwm}} {
		listed, err := l.list(ctx, topic)
		require.NoError(t, err)
		require.NoError(t, listed.Error())
		listed.Each(func(o kadm.ListedOffset) { l.into[o.Partition] = o.Offset })
	}
	return ends
}

// topicIDOf returns topic's id.
func topicIDOf(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) [16]byte {
	t.Helper()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	require.NoError(t, err)
	require.NoError(t, topics.Error())
	return topics[topic].ID
}

// fetchOnce sends one fetch of partition p from offset with isolation and
// a limit of maxBytes, per request and partition, and returns the
// partition's answer with its record batches. It does not wait for data.
func fetchOnce(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, topicID [16]byte, p int32, offset int64, isolation int8, maxBytes int32) (kmsg.FetchResponseTopicPartition, []kmsg.RecordBatch) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, 0, 0, maxBytes
	req.IsolationLevel, req.SessionEpoch = isolation, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID // by name before v13, by id since
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offset, maxBytes
	rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.NoError(t, kerr.ErrorForCode(resp.ErrorCode))
	require.Len(t, resp.Topics, 1)
	require.Len(t, resp.Topics[0].Partitions, 1)
	part := resp.Topics[0].Partitions[0]
	require.NoError(t, kerr.ErrorForCode(part.ErrorCode), "fetch %s/%d from %d", topic, p, offset)
	return part, recordBatches(t, part.RecordBatches)
}

// recordBatches splits raw into its record batches.
func recordBatches(t *testing.T, raw []byte) []kmsg.RecordBatch {
	t.Helper()
	var out []kmsg.RecordBatch
	for len(raw) > 0 {
		require.GreaterOrEqual(t, len(raw), 12, "torn batch header")
		n := 12 + int(binary.BigEndian.Uint32(raw[8:12]))
		require.GreaterOrEqual(t, len(raw), n, "torn batch")
		var b kmsg.RecordBatch
		require.NoError(t, b.ReadFrom(raw[:n]))
		out = append(out, b)
		raw = raw[n:]
	}
	return out
}

// nextOffset returns the offset after batch b.
func nextOffset(b kmsg.RecordBatch) int64 { return b.FirstOffset + int64(b.LastOffsetDelta) + 1 }

// isMarker reports whether b is a transaction marker of producer pid that
// commits (commit) or aborts.
func isMarker(b kmsg.RecordBatch, pid int64, commit bool) bool {
	if b.Attributes&0x20 == 0 || b.ProducerID != pid {
		return false
	}
	// One control record: its key is version (int16) and type (int16,
	// 0 abort, 1 commit).
	var rec kmsg.Record
	if rec.ReadFrom(b.Records) != nil || len(rec.Key) < 4 {
		return false
	}
	return bytes.Equal(rec.Key[2:4], []byte{0, map[bool]byte{true: 1, false: 0}[commit]})
}
