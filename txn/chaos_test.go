package txn_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A worker process killed with SIGKILL after producing but before End,
// after the offsets were sent but before EndTxn, and right after commit;
// exactly-once holds each time.
func TestCrashPoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  kmsg.Key
	}{
		{"after_produce_before_end", kmsg.Produce},
		{"after_offsets_before_end_txn", kmsg.TxnOffsetCommit},
		{"right_after_commit", kmsg.EndTxn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ws, n := crashScenario(t, txn.ExactlyOnce, crashPoint{key: tc.key, commits: 2})
			restarted := ws[1]
			at := restarted.waitLine(restarted.Started, 60*time.Second, msgCommitted)
			t.Logf("the restarted w2 committed %.2fs after it started", at.Sub(restarted.Started).Seconds())
			rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
			require.True(t, rep.Clean(), "%s", rep)
			f.stopAll(ws...)
		})
	}
}

// crashScenario runs three workers w1, w2, w3 of one passthrough app, w2
// crashing at cp (armed after the warm-up), feeds input while they run,
// requires that w2 died by SIGKILL at its crash point, restarts it (same
// instance id) while input still flows, and waits until all input is
// produced. It returns the fleet, the running workers (w1, the restarted
// w2, w3) and the number of input records.
func crashScenario(t *testing.T, g txn.Guarantee, cp crashPoint) (*fleet, []*proc, int64) {
	f := newFleet(t, "crash", g)
	w1, w2, w3 := f.start("w1", nil), f.start("w2", &cp), f.start("w3", nil)
	from := f.warmUp(w1, w2, w3)
	w2.armCrash()
	feed := startFeeder(t, f.brokers, "in", from, from+20_000, 500, 20*time.Millisecond)
	w2.waitExit(90 * time.Second)
	w2.requireKilled()
	line, ok := w2.Lines.Find(w2.Started, msgCrashPoint)
	require.True(t, ok, "w2 died without reaching its crash point")
	t.Logf("w2: %s", line.Text)
	w2 = f.start("w2", nil)
	n := feed.wait()
	return f, []*proc{w1, w2, w3}, n
}

// verifyOutput reads "out" with txntest.Verify for at most within and
// reports on sequence numbers [0, n).
func verifyOutput(t *testing.T, brokers []string, n int64, within time.Duration) txntest.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	rep, err := txntest.Verify(ctx, brokers, "out", n)
	require.NoError(t, err)
	t.Logf("output: %s", rep)
	return rep
}

// A worker SIGSTOPped past its session timeout, then resumed, is fenced
// and none of its writes become visible.
func TestZombieIsFenced(t *testing.T) {
	f := newFleet(t, "zombie", txn.ExactlyOnce)
	w1, w2, w3 := f.start("w1", nil), f.start("w2", nil), f.start("w3", nil)
	from := f.warmUp(w1, w2, w3)
	feed := startFeeder(t, f.brokers, "in", from, math.MaxInt64, 100, 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Freeze w3 while it has a transaction open with records in it, so
	// that it resumes in the middle of that transaction, and wait until
	// the broker ends that transaction. Only the broker can: at its
	// timeout, aborting it and bumping the producer epoch, which fences
	// w3. Unless w3 sent the EndTxn just before it stopped; then it is
	// not fenced, and it is frozen again.
	parts := f.assigned("w3", "in")
	require.NotEmpty(t, parts)
	const txnID = "zombie-w3"
	var (
		frozen   kadm.DescribedTransaction
		frozenAt time.Time
		before   map[int32]int64 // the group's offsets of parts at the freeze
		ends     map[topicPartition]txnMarker
	)
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		require.True(t, time.Now().Before(deadline), "w3 never stopped with a transaction open with records in it (%d attempts)", attempt-1)
		w3.signal(syscall.SIGSTOP)
		w3.waitStopped(10 * time.Second)
		frozenAt = time.Now()
		d, err := f.adm.DescribeTransactions(ctx, txnID)
		if err == nil && d[txnID].State == "Ongoing" && len(d[txnID].Topics) > 0 {
			if starts := f.txnStarts(ctx, d[txnID]); len(starts) > 0 {
				frozen = d[txnID]
				before = f.committed(ctx, "in", parts)
				ends = f.txnEnds(ctx, frozen, starts, 60*time.Second)
				if !endedByItsProducer(ends, frozen.ProducerEpoch) {
					break
				}
				t.Logf("attempt %d: w3's own EndTxn, sent before it stopped, ended its transaction", attempt)
			}
		}
		w3.signal(syscall.SIGCONT)
	}
	for tp, m := range ends {
		require.True(t, m.abort && m.epoch == frozen.ProducerEpoch+1,
			"the frozen w3's transaction (producer %d, epoch %d) ended in %s/%d by %s, not by the broker's abort at epoch %d",
			frozen.ProducerID, frozen.ProducerEpoch, tp.topic, tp.partition, m, frozen.ProducerEpoch+1)
	}
	t.Logf("w3 frozen in transaction producer %d epoch %d on %v; the broker aborted it after %v",
		frozen.ProducerID, frozen.ProducerEpoch, frozen.Topics.Sorted(), time.Since(frozenAt).Round(time.Millisecond))

	// Past its session timeout (the group drops it) while the others take
	// its partitions over.
	require.Eventually(t, func() bool {
		groups, err := f.adm.DescribeGroups(ctx, "zombie")
		if err != nil {
			return false
		}
		return !slices.ContainsFunc(groups["zombie"].Members, func(m kadm.DescribedGroupMember) bool {
			return m.InstanceID != nil && *m.InstanceID == "w3"
		})
	}, 60*time.Second, 50*time.Millisecond, "the frozen w3 stayed in the group")
	require.Eventually(t, func() bool {
		now := f.committed(ctx, "in", parts)
		for _, p := range parts {
			if now[p] <= before[p] {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "the others did not take over w3's partitions %v", parts)
	t.Logf("w3 frozen for %v", time.Since(frozenAt).Round(time.Millisecond))

	resumedAt := time.Now()
	w3.signal(syscall.SIGCONT)
	fenced := []string{msgRecreated, msgUnknown, "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"}
	fencedAt := w3.waitLine(resumedAt, 60*time.Second, fenced...)
	ln, _ := w3.Lines.Find(fencedAt, fenced...)
	t.Logf("w3 after SIGCONT: %s", ln.Text)
	// It recovers by itself and takes part again.
	w3.waitLine(fencedAt, 60*time.Second, msgCommitted)

	n := feed.stop()
	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	f.stopAll(w1, w2, w3)
}

// waitStopped waits up to d until every thread of the process is
// stopped (child.Process.WaitStopped).
func (p *proc) waitStopped(d time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	require.NoError(p.t, p.WaitStopped(ctx))
}

type topicPartition struct {
	topic     string
	partition int32
}

// txnMarker is the control record that ended a transaction in one
// partition.
type txnMarker struct {
	abort  bool
	epoch  int16 // the producer epoch it was written with
	offset int64
}

func (m txnMarker) String() string {
	kind := "commit"
	if m.abort {
		kind = "abort"
	}
	return fmt.Sprintf("a %s marker at epoch %d (offset %d)", kind, m.epoch, m.offset)
}

// txnStarts returns the first offset of txn, which is open, in each of
// its partitions that holds records of it. It returns none when txn
// ended meanwhile.
func (f *fleet) txnStarts(ctx context.Context, txn kadm.DescribedTransaction) map[topicPartition]int64 {
	f.t.Helper()
	ps, err := f.adm.DescribeProducers(ctx, txn.Topics)
	require.NoError(f.t, err)
	starts := map[topicPartition]int64{}
	ps.EachProducer(func(p kadm.DescribedProducer) {
		if p.ProducerID == txn.ProducerID && p.ProducerEpoch == txn.ProducerEpoch && p.CurrentTxnStartOffset >= 0 {
			starts[topicPartition{p.Topic, p.Partition}] = p.CurrentTxnStartOffset
		}
	})
	return starts
}

// txnEnds waits up to d until the broker no longer reports txn open, and
// returns the marker that ended it in each partition of starts, which
// holds its first offset there: the first control record of its
// producer id from that offset on. A producer's EndTxn has the markers
// written at the transaction's epoch; the broker aborting a transaction
// at its timeout bumps the epoch first, fencing the producer, and writes
// them at the bumped one.
func (f *fleet) txnEnds(ctx context.Context, txn kadm.DescribedTransaction, starts map[topicPartition]int64, d time.Duration) map[topicPartition]txnMarker {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	require.Eventually(f.t, func() bool {
		got, err := f.adm.DescribeTransactions(ctx, txn.TxnID)
		now := got[txn.TxnID]
		return err == nil && !(now.State == "Ongoing" && now.ProducerID == txn.ProducerID && now.ProducerEpoch == txn.ProducerEpoch)
	}, d, 20*time.Millisecond, "transaction %s (producer %d, epoch %d) never ended", txn.TxnID, txn.ProducerID, txn.ProducerEpoch)

	from := map[string]map[int32]kgo.Offset{}
	for tp, at := range starts {
		if from[tp.topic] == nil {
			from[tp.topic] = map[int32]kgo.Offset{}
		}
		from[tp.topic][tp.partition] = kgo.NewOffset().At(at)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...), kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	require.NoError(f.t, err)
	defer cl.Close()
	ends := map[topicPartition]txnMarker{}
	for len(ends) < len(starts) {
		fs := cl.PollFetches(ctx)
		require.NoError(f.t, ctx.Err(), "markers of transaction %s (producer %d, epoch %d) found: %v, starting at %v",
			txn.TxnID, txn.ProducerID, txn.ProducerEpoch, ends, starts)
		fs.EachRecord(func(r *kgo.Record) {
			tp := topicPartition{r.Topic, r.Partition}
			if _, ok := ends[tp]; ok || !r.Attrs.IsControl() || r.ProducerID != txn.ProducerID {
				return
			}
			var key kmsg.ControlRecordKey
			require.NoError(f.t, key.ReadFrom(r.Key), "control record key at %s/%d@%d", r.Topic, r.Partition, r.Offset)
			ends[tp] = txnMarker{abort: key.Type == kmsg.ControlRecordKeyTypeAbort, epoch: r.ProducerEpoch, offset: r.Offset}
		})
	}
	return ends
}

// endedByItsProducer reports whether the markers ending a transaction at
// epoch were written by its producer's EndTxn rather than by the broker.
func endedByItsProducer(ends map[topicPartition]txnMarker, epoch int16) bool {
	for _, m := range ends {
		if m.epoch != epoch {
			return false
		}
	}
	return true
}

// committed returns the group's committed offsets of topic's partitions
// (without waiting for pending transactional offsets).
func (f *fleet) committed(ctx context.Context, topic string, parts []int32) map[int32]int64 {
	f.t.Helper()
	got, err := f.adm.FetchOffsets(ctx, f.cfg.app)
	require.NoError(f.t, err)
	m := map[int32]int64{}
	for _, p := range parts {
		if o, ok := got.Lookup(topic, p); ok && o.Err == nil {
			m[p] = o.At
		}
	}
	return m
}

// A worker SIGKILLed and restarted with the same instance id commits again
// within 2 s and the others never stop; a worker SIGKILLed and not
// restarted has its partitions processed by the others within the session
// timeout + 2 s.
//
// The restart is timed from the worker's first log line: starting the
// race-instrumented test binary took up to 1.2 s more on an overloaded
// machine, and that is not the worker's time (both are logged).
//
// The restart is measured twice: after a SIGKILL at a random moment, and
// after one between sending its offsets and EndTxn (the crash point
// TxnOffsetCommit), where the dead worker's pending offsets hold up the
// offset fetch of its successor until its transaction is fenced.
func TestLiveness(t *testing.T) {
	f := newFleet(t, "liveness", txn.ExactlyOnce)
	pending := &crashPoint{key: kmsg.TxnOffsetCommit, commits: 1}
	w1, w2, w3 := f.start("w1", nil), f.start("w2", nil), f.start("w3", pending)
	from := f.warmUp(w1, w2, w3)
	feed := startFeeder(t, f.brokers, "in", from, math.MaxInt64, 100, 20*time.Millisecond)

	// restart waits for dead to die, starts w3 again and returns the new
	// process, how long it took to commit since its worker started, and the
	// longest the others went without a commit since killedAt.
	restart := func(dead *proc, killedAt time.Time, crash *crashPoint) (*proc, time.Duration, time.Duration) {
		dead.waitExit(60 * time.Second)
		dead.requireKilled()
		p := f.start("w3", crash)
		startedAt := p.waitLine(p.Started, 30*time.Second, msgStarting)
		committedAt := p.waitLine(startedAt, 30*time.Second, msgCommitted)
		var gap time.Duration
		for _, o := range []*proc{w1, w2} {
			gap = max(gap, longestGap(o.Lines.Times(msgCommitted), killedAt, committedAt))
		}
		t.Logf("w3 restarted: process start to worker start %v, worker start to first commit %v",
			startedAt.Sub(p.Started).Round(time.Millisecond), committedAt.Sub(startedAt).Round(time.Millisecond))
		return p, committedAt.Sub(startedAt), gap
	}
	w3.waitLine(time.Now(), 30*time.Second, msgCommitted)
	killedAt := time.Now()
	w3.signal(syscall.SIGKILL)
	w3, restartToCommit, othersGap := restart(w3, killedAt, pending)

	w3.waitLine(time.Now(), 30*time.Second, msgCommitted)
	killedAt = time.Now()
	w3.armCrash()
	dead := w3
	w3, pendingRestartToCommit, pendingOthersGap := restart(dead, killedAt, nil)
	_, ok := dead.Lines.Find(dead.Started, msgCrashPoint)
	require.True(t, ok, "w3 died without reaching its crash point")

	// Not restarted: watch the output partitions of w3's input partitions
	// (passthrough keeps keys, and both topics have the same partition
	// count) for the first record produced after the kill.
	parts := f.assigned("w3", "in")
	require.NotEmpty(t, parts)
	watch := watchOutput(t, f.brokers, "out", parts)
	killedAt = time.Now()
	w3.signal(syscall.SIGKILL)
	w3.waitExit(10 * time.Second)
	w3.requireKilled()
	takeover := watch.firstAtOrAbove(feed.issued.Load(), 60*time.Second).Sub(killedAt)

	n := feed.stop()
	t.Logf("LIVENESS restart_to_commit=%.2fs restart_to_commit_pending_offsets=%.2fs others_longest_commit_gap=%.2fs takeover=%.2fs session_timeout=%v partitions=%v",
		restartToCommit.Seconds(), pendingRestartToCommit.Seconds(), max(othersGap, pendingOthersGap).Seconds(),
		takeover.Seconds(), f.cfg.sessionTimeout, parts)
	require.LessOrEqual(t, restartToCommit, 2*time.Second, "restarted worker's first commit")
	require.LessOrEqual(t, max(othersGap, pendingOthersGap), 2*time.Second, "the other workers stalled while w3 restarted")
	require.LessOrEqual(t, takeover, f.cfg.sessionTimeout+2*time.Second, "takeover of a dead worker's partitions")
	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	require.LessOrEqual(t, pendingRestartToCommit, 2*time.Second,
		"first commit of a worker restarted after dying between TxnOffsetCommit and EndTxn")
	f.stopAll(w1, w2)
}

// A worker heartbeats at least twice per session timeout. Kafka's rule is
// three times (heartbeat.interval.ms at most a third of session.timeout.ms):
// a member waiting in a rebalance for one whose next heartbeat is a whole
// session timeout away gets expelled, and with the embedded broker its
// JoinGroup is then never answered (franz-go waits out rebalance timeout +
// 10s, about 70s, and Close waits for that).
func TestHeartbeatsWithinSessionTimeout(t *testing.T) {
	b, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	c := &cluster{t: t, brokers: []string{addr}}
	require.NoError(t, broker.CreateTopics(c.ctx(30*time.Second), c.brokers, 1, "in", "out"))
	topo, err := passthrough.Build("heartbeat", "in", "out")
	require.NoError(t, err)
	const session = 3 * time.Second
	beats := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: "heartbeat", Observe: true, Count: -1})
	ws := c.workers(topo, txn.Config{SessionTimeout: session})
	ws.start("w1")
	require.NoError(t, beats.Wait(c.ctx(30*time.Second), 1), "the worker never heartbeat")
	first := beats.Hits()
	ctx, cancel := context.WithTimeout(context.Background(), session)
	defer cancel()
	require.NoError(t, beats.Wait(ctx, first+2), "heartbeats in one session timeout (%v): %d", session, beats.Hits()-first)
}

// longestGap returns the longest stretch of [from, to] without any of ts.
func longestGap(ts []time.Time, from, to time.Time) time.Duration {
	var gap time.Duration
	last := from
	for _, at := range ts {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}

// outputWatch reads partitions of a topic with read_committed from their
// current end and records, per partition, when records arrived.
type outputWatch struct {
	t     *testing.T
	cl    *kgo.Client
	parts []int32
}

func watchOutput(t *testing.T, brokers []string, topic string, parts []int32) *outputWatch {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for _, p := range parts {
		offsets[p] = kgo.NewOffset().AtEnd()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	// Resolve the end offsets now, before anything of interest is written.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	cl.PollFetches(ctx)
	return &outputWatch{t: t, cl: cl, parts: parts}
}

// firstAtOrAbove waits up to d until every watched partition delivered a
// record with sequence number seq or above, and returns when the last of
// those first records arrived.
func (w *outputWatch) firstAtOrAbove(seq int64, d time.Duration) time.Time {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	first := map[int32]time.Time{}
	for len(first) < len(w.parts) {
		fs := w.cl.PollFetches(ctx)
		require.NoError(w.t, ctx.Err(), "partitions %v got no record at or above %d; first ones: %v", w.parts, seq, first)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			if s, err := txntest.ParseSeq(r.Value); err == nil && s >= seq {
				if _, ok := first[r.Partition]; !ok {
					first[r.Partition] = now
				}
			}
		})
	}
	var last time.Time
	for _, at := range first {
		if at.After(last) {
			last = at
		}
	}
	return last
}

// The broker stopped and restarted on its data directory mid-run; the
// workers recover by themselves (none exits), exactly-once holds.
func TestBrokerRestart(t *testing.T) {
	const n = 20_000
	dir, addr := t.TempDir(), freeAddr(t)
	b1, _, err := broker.Start(broker.Config{Addr: addr, DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(b1.Close)
	c := &cluster{t: t, brokers: []string{addr}}
	require.NoError(t, broker.CreateTopics(c.ctx(30*time.Second), c.brokers, 8, "in", "out"))
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	t.Cleanup(adm.Close)
	topo, err := passthrough.Build("restart", "in", "out")
	require.NoError(t, err)
	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, CommitInterval: 50 * time.Millisecond})
	ws.start("w1")
	ws.start("w2")
	ws.start("w3")
	from := warmUp(t, c.brokers, kadm.NewClient(adm), "restart", 3)

	// Hold back the answer to the first EndTxn and stop the broker while
	// it is pending: one worker is in the middle of a commit, with the
	// outcome unknown to it, when the broker goes away.
	pending := make(chan struct{})
	b1.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		close(pending) // a handled control is removed: this runs once
		return nil, nil, true
	})
	startFeeder(t, c.brokers, "in", from, n/2, 500, 20*time.Millisecond).wait()
	select {
	case <-pending:
	case <-c.ctx(30 * time.Second).Done():
		require.FailNow(t, "no worker tried to commit")
	}
	b1.Close()
	b2, _, err := broker.Start(broker.Config{Addr: addr, DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(b2.Close)
	startFeeder(t, c.brokers, "in", n/2, n, 500, 20*time.Millisecond).wait()

	rep := verifyOutput(t, c.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	ws.stopAll()
	ws.requireNoErrors()
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a broker that must come back on the same address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
