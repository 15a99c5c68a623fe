package txn_test

import (
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn/txntest"
)

// replayCase is a topology of workerMain, an input for it, and what a run
// over the input must write.
type replayCase struct {
	topology  string
	in        []inputRecord
	outputs   int    // records in "out" once the input is processed
	changelog string // the store's changelog, less the app id
	// changelogAtLeast is a lower bound on the changelog's records: one
	// per record counted in a window, or (packed) 1.
	changelogAtLeast int
	// source is the input partition (the task) that wrote an output
	// record of key; nil when the output keeps the input's partitions.
	source func(key []byte) int32
	// packed: the changelog is a state.Segmented store's, written in
	// packs; what it restores is compared (packedState), not its records.
	packed bool
}

// bySource splits each partition of an output log into what each task
// wrote to it, as partition p's records from task s at p*fleetPartitions+s:
// the order of one task's records in a partition is fixed by its input,
// how several tasks' records interleave is not.
func bySource(l txntest.Log, source func(key []byte) int32) txntest.Log {
	if source == nil {
		return l
	}
	split := txntest.Log{}
	for p, rs := range l {
		for _, r := range rs {
			s := p*fleetPartitions + source(r.Key)
			split[s] = append(split[s], r)
		}
	}
	return split
}

// dedupReplayInput is n sequence numbers (txntest.SeqValue), keyed by
// their number so that the dedup topology's repartition keeps each
// partition's order, the i-th stamped i seconds after wcountBase (a fifth
// up to 30 s early), so that the hour of dedup forgets ids and tombstones
// them; one record in ten before the last 1000 repeats one of the 100
// before it instead. It returns the input and its number of distinct
// sequence numbers.
func dedupReplayInput(seed uint64, n int) ([]inputRecord, int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	var in []inputRecord
	distinct := map[int64]bool{}
	for seq := range n {
		s := int64(seq)
		if seq < n-1000 && seq >= 100 && rng.IntN(10) == 0 {
			s -= 1 + rng.Int64N(100)
		}
		ts := wcountBase.Add(time.Duration(seq) * time.Second)
		if rng.IntN(5) == 0 {
			ts = ts.Add(-time.Duration(rng.IntN(30_000)) * time.Millisecond)
		}
		distinct[s] = true
		in = append(in, inputRecord{key: []byte(strconv.FormatInt(s, 10)), value: txntest.SeqValue(s, 100), ts: ts})
	}
	return in, len(distinct)
}

// wcountReplayInput is n records of keys k0..k99 for the windowed count
// (wcountTopology: one-second windows, no grace), the i-th stamped i ms
// after wcountBase, a quarter of them up to 600 ms early (out of order,
// some late), then one closing record per key a minute on, two windows
// apart from each other, so that every partition's last records close
// windows.
func wcountReplayInput(seed uint64, n int) []inputRecord {
	rng := rand.New(rand.NewPCG(seed, seed))
	var in []inputRecord
	for i := range n {
		ts := wcountBase.Add(time.Duration(i) * time.Millisecond)
		if rng.IntN(4) == 0 {
			ts = ts.Add(-time.Duration(rng.IntN(600)) * time.Millisecond)
		}
		in = append(in, inputRecord{key: []byte("k" + strconv.Itoa(rng.IntN(wcountKeys))), value: txntest.SeqValue(int64(i), 100), ts: ts})
	}
	closing := wcountBase.Add(time.Duration(n)*time.Millisecond + time.Minute)
	for k := range wcountKeys {
		in = append(in, inputRecord{key: []byte("k" + strconv.Itoa(k)), value: txntest.SeqValue(int64(n+k), 100),
			ts: closing.Add(time.Duration(k) * 2 * time.Second)})
	}
	return in
}

// replayRun runs c on a fresh broker with one worker and no kills (a run
// with no failure and no rebalance), or with two that it SIGKILLs in turn
// kills times, and returns the committed output and changelog once the
// output is complete and the workers stopped. The input arrives in
// kills+1 parts: before each kill the next part, so that the worker to be
// killed has input to commit (each kill comes a pause drawn from rng
// after its first commit since it started, inside a transaction or
// between two; or after the part was consumed, when the other worker
// processed all of it, as when it owned every partition before the one
// to be killed joined), and the last part after the last restart. The last
// records of every partition write output, so a complete output means
// the whole input was processed. The changelog is read until it has at
// least changelogAtLeast records and then is quiet for a second.
func replayRun(t *testing.T, c replayCase, kills int, rng *rand.Rand, changelogAtLeast int) (out, changelog txntest.Log) {
	f := newStateFleet(t, "replay")
	f.cfg.topology = c.topology
	w := map[string]*proc{"w1": f.start("w1", nil)}
	if kills > 0 {
		w["w2"] = f.start("w2", nil)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...))
	require.NoError(t, err)
	defer cl.Close()
	parts := kills + 1
	produce := func(part int) {
		for _, r := range c.in[len(c.in)*part/parts : len(c.in)*(part+1)/parts] {
			cl.Produce(context.Background(), r.kgo(), nil)
		}
		require.NoError(t, cl.Flush(context.Background()))
	}
	names := slices.Sorted(maps.Keys(w))
	idle := 0
	for i := range kills {
		produce(i)
		p := w[names[i%len(names)]]
		if !f.waitCommitOrIdle(p, time.Minute, func() bool { return true }) {
			idle++ // the other worker processed the part: p owns nothing yet
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // where the kill falls, not a wait for anything
		p.signal(syscall.SIGKILL)
		p.waitExit(30 * time.Second)
		w[p.Name] = f.start(p.Name, nil)
	}
	produce(kills)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err = txntest.ReadLog(ctx, f.brokers, "out", c.outputs)
	require.NoError(t, err)
	require.Equal(t, c.outputs, out.Len(), "records in out")
	f.stopAll(slices.Collect(maps.Values(w))...)
	changelog, err = txntest.ReadLog(ctx, f.brokers, "replay-"+c.changelog, changelogAtLeast)
	require.NoError(t, err)
	require.GreaterOrEqual(t, changelog.Len(), changelogAtLeast, "records in the changelog")
	t.Logf("kills: %d (%d of a worker with nothing to commit); aborted records: %d in out, %d in the changelog", kills, idle,
		uncommitted(ctx, t, f.brokers, "out", out.Len())-out.Len(),
		uncommitted(ctx, t, f.brokers, "replay-"+c.changelog, changelog.Len())-changelog.Len())
	return out, changelog
}

// The same input, processed once by one worker without a failure and
// once by two SIGKILLed in turn at random points (seeded; the seed is
// logged), gives byte-identical committed output and state: every
// partition of "out" and of the store's changelog holds the same keys,
// values and timestamps in the same order (DESIGN.md invariant 7). The
// input holds out-of-order, late and repeated records, and keys each
// partition's records as the topology's repartition does, so that its
// order per partition is fixed. (Where the output leaves the input's
// partitions, as the windowed count's does, each output partition
// interleaves the records of several tasks as they happen to run: there,
// what each task wrote to it is compared.) A kill may cut a transaction;
// its records are aborted and redone the same way.
func TestReplayAfterKillsIsByteIdentical(t *testing.T) {
	busyCPU(t)
	dedupIn, distinct := dedupReplayInput(3, 6000)
	wcountIn := wcountReplayInput(4, 6000)
	revenueIn := revenueOrders(5, 6000)
	count := func(inputRecord) int64 { return 1 }
	wcounts := recomputeWindows(wcountIn, time.Second, 0, count)
	revenues := recomputeWindows(revenueIn, revenueWindow, revenueGrace, orderCents)
	cases := map[string]replayCase{
		"dedup": {"dedup", dedupIn, distinct, "seqs-changelog", 1, nil, true},
		// The count's output key is "key@window-start": it leaves the
		// key's partition.
		"wcount": {"wcount", wcountIn, len(wcounts.emitted), "wcounts-changelog", len(wcountIn) - wcounts.late,
			func(k []byte) int32 {
				key, _, _ := bytes.Cut(k, []byte("@"))
				return inputRecord{key: key}.partition()
			}, false},
		"revenue": {"revenue", revenueIn, len(revenues.emitted), "revenue-changelog", len(revenueIn) - revenues.late, nil, false},
	}
	for _, name := range []string{"dedup", "wcount", "revenue"} {
		t.Run(name, func(t *testing.T) {
			c := cases[name]
			seed := uint64(time.Now().UnixNano())
			t.Logf("kill seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))
			out, changelog := replayRun(t, c, 0, rng, c.changelogAtLeast)
			atLeast := changelog.Len()
			if c.packed {
				atLeast = 1 // how many packs depends on where batches end
			}
			killedOut, killedChangelog := replayRun(t, c, 4, rng, atLeast)
			t.Logf("out: %d records; changelog: %d records (%d with kills), %d live", out.Len(), changelog.Len(), killedChangelog.Len(), len(changelog.Table()))
			require.Positive(t, changelog.Len())
			require.Empty(t, txntest.DiffLogs(bySource(out, c.source), bySource(killedOut, c.source)), "output, without kills vs with")
			if c.packed {
				st := packedState(t, changelog)
				require.Positive(t, st.Len(), "ids kept")
				require.Empty(t, txntest.DiffLogs(st, packedState(t, killedChangelog)), "state the changelog restores, without kills vs with")
				return
			}
			require.Empty(t, txntest.DiffLogs(changelog, killedChangelog), "changelog, without kills vs with")
		})
	}
}

// packedState is what a packed changelog (state.Segmented) restores, per
// partition: a record per entry, in key order, keyed by its segment and
// encoded key, without a timestamp. Which writes share a pack depends on
// where batches end, which kills move; the state the packs restore does
// not.
func packedState(t *testing.T, l txntest.Log) txntest.Log {
	t.Helper()
	st := txntest.Log{}
	for p, rs := range l {
		table := map[string][]byte{}
		for _, r := range rs {
			_, _, writes, err := state.SegmentedChangelogEntries(r.Key, r.Value)
			require.NoError(t, err)
			seg := string(r.Key[:8])
			if r.Tombstone { // the whole segment is dropped
				maps.DeleteFunc(table, func(k string, _ []byte) bool { return strings.HasPrefix(k, seg) })
				continue
			}
			for _, w := range writes {
				if w.Value == nil {
					delete(table, seg+string(w.Key))
				} else {
					table[seg+string(w.Key)] = w.Value
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(table)) {
			st[p] = append(st[p], txntest.LogRecord{Key: []byte(k), Value: table[k]})
		}
	}
	return st
}

// uncommitted returns how many records of topic a read_uncommitted reader
// sees, aborted ones included, reading until it has seen at least n and
// then a second passes with nothing new.
func uncommitted(ctx context.Context, t *testing.T, brokers []string, topic string, n int) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	seen := 0
	for ctx.Err() == nil {
		got := 0
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		for pctx.Err() == nil {
			got += cl.PollFetches(pctx).NumRecords()
		}
		cancel()
		seen += got
		if got == 0 && seen >= n {
			break
		}
	}
	return seen
}
