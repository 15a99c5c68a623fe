package txn_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stateFleet is a fleet running the running-sum topology, each worker with
// its own state directory under root.
type stateFleet struct {
	*fleet
	root string
}

func newStateFleet(t *testing.T, app string) *stateFleet {
	f := newFleet(t, app, txn.ExactlyOnce)
	f.cfg.topology = "sum"
	return &stateFleet{fleet: f, root: t.TempDir()}
}

func (f *stateFleet) start(instance string, crash *crashPoint) *proc {
	cfg := f.cfg
	cfg.instance, cfg.crash, cfg.stateDir = instance, crash, filepath.Join(f.root, instance)
	return startProc(f.t, cfg)
}

// killInTurn SIGKILLs the workers w in turn, times times in all, each
// once it has committed since it started (or, once feed is over and its
// input consumed, when it has nothing left to commit), and restarts it at
// once with the same instance id and state directory; w holds the running
// ones.
func (f *stateFleet) killInTurn(w map[string]*proc, times int, feed *feeder) {
	f.t.Helper()
	names := slices.Sorted(maps.Keys(w))
	idle := 0
	for i := range times {
		name := names[i%len(names)]
		p := w[name]
		if !f.waitCommitOrIdle(p, time.Minute, feed.over) {
			idle++
		}
		p.signal(syscall.SIGKILL)
		p.waitExit(30 * time.Second)
		w[name] = f.start(name, nil)
	}
	f.t.Logf("%d kills, %d of them of a worker with nothing left to commit", times, idle)
}

var restoredLine = regexp.MustCompile(`msg="task restored".* records=(\d+)`)

// restored returns how many changelog records p restored, over all tasks.
func restored(p *proc) int64 {
	var n int64
	for _, l := range p.Lines.All() {
		if m := restoredLine.FindStringSubmatch(l.Text); m != nil {
			k, _ := strconv.ParseInt(m[1], 10, 64)
			n += k
		}
	}
	return n
}

// localSums reads the "sums" store of every task database under dirs,
// after their workers stopped: the state a restart would begin from. The
// dirs must not hold two copies of one task.
func localSums(t *testing.T, dirs ...string) map[string]int64 {
	t.Helper()
	sums := map[string]int64{}
	for _, dir := range dirs {
		tasks, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, task := range tasks {
			db, err := state.Open(filepath.Join(dir, task.Name()), state.Options{FS: vfs.Default})
			require.NoError(t, err)
			kv, err := state.NewKeyValue(db, "sums", "", nil, serde.String, serde.Int64)
			require.NoError(t, err)
			it := kv.All()
			for it.Next() {
				_, dup := sums[it.Key()]
				require.False(t, dup, "key %s in two tasks", it.Key())
				sums[it.Key()] = it.Value()
			}
			require.NoError(t, it.Close())
			require.NoError(t, db.Close())
		}
	}
	return sums
}

// A worker SIGKILLed after the Kafka commit but before the Pebble apply
// restarts and replays only the tail of its changelog; its state then
// equals the recomputation from the committed input. The databases keep
// no write-ahead log, so the tail is what was applied since the last
// flush, plus the unapplied transaction: the worker flushes every 50
// writes here (the default, 100,000, would hold this whole store).
func TestTailRestoreAfterCrashBetweenCommitAndApply(t *testing.T) {
	busyCPU(t)
	f := newStateFleet(t, "tail")
	f.cfg.flushWrites = 50
	cp := crashPoint{key: kmsg.EndTxn, commits: 2}
	w1 := f.start("w1", &cp)
	from := f.warmUp(w1)
	// Fill the store: one key per record.
	const fill = 20_000
	fillFeed := startKeyedFeeder(t, f.brokers, "in", from, from+fill, 5000, time.Millisecond, 0)
	storeSize := fillFeed.wait()
	require.True(t, verifyOutput(t, f.brokers, storeSize, 2*time.Minute).Clean())

	w1.armCrash()
	feed := startKeyedFeeder(t, f.brokers, "in", storeSize, storeSize+3000, 20, 20*time.Millisecond, 0)
	w1.waitExit(90 * time.Second)
	w1.requireKilled()
	_, ok := w1.Lines.Find(w1.Started, msgCrashPoint)
	require.True(t, ok, "w1 died without reaching its crash point")

	w1 = f.start("w1", nil)
	w1.waitLine(w1.Started, time.Minute, msgCommitted)
	n := feed.wait()
	tail := restored(w1)
	t.Logf("RESTORE store=%d keys, restored after the crash=%d records", storeSize, tail)
	require.Positive(t, tail, "the committed but unapplied transaction must be replayed")
	require.Less(t, tail, storeSize/20, "only the tail is replayed, never the whole store")

	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	f.stopAll(w1)
	require.Equal(t, expectedSums(n, 0), localSums(t, filepath.Join(f.root, "w1")))
}

// A wiped state directory restores fully from the changelog and equals the
// recomputation.
func TestFullRestoreAfterWipe(t *testing.T) {
	busyCPU(t)
	f := newStateFleet(t, "wipe")
	w1 := f.start("w1", nil)
	from := f.warmUp(w1)
	n := startKeyedFeeder(t, f.brokers, "in", from, from+5000, 1000, time.Millisecond, 100).wait()
	require.True(t, verifyOutput(t, f.brokers, n, 2*time.Minute).Clean())
	f.stopAll(w1)
	require.NoError(t, os.RemoveAll(filepath.Join(f.root, "w1")))

	w1 = f.start("w1", nil)
	n = startKeyedFeeder(t, f.brokers, "in", n, n+2000, 500, 10*time.Millisecond, 100).wait()
	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	require.GreaterOrEqual(t, restored(w1), int64(100), "every key's changelog replayed")
	f.stopAll(w1)
	// warmUp's keys are k0..k399 (mod 1000); the feeders' are k0..k99.
	require.Equal(t, expectedWithWarmUp(from, n, 100), localSums(t, filepath.Join(f.root, "w1")))
}

// expectedWithWarmUp recomputes the sums for warmUp's records [0, from)
// (keys mod 1000) and the feeders' [from, n) (keys mod keys).
func expectedWithWarmUp(from, n, keys int64) map[string]int64 {
	want := expectedSums(from, 1000)
	for seq := from; seq < n; seq++ {
		want["k"+strconv.FormatInt(seq%keys, 10)] += amount(seq)
	}
	return want
}

// Under repeated SIGKILLs of two workers, a per-key sum (the seed article's
// `revenue += amount`) equals the recomputation from the input: exactly
// once, not "effectively".
func TestSumExactUnderRepeatedKills(t *testing.T) {
	busyCPU(t)
	f := newStateFleet(t, "kills")
	w := map[string]*proc{"w1": f.start("w1", nil), "w2": f.start("w2", nil)}
	from := f.warmUp(w["w1"], w["w2"])
	feed := startKeyedFeeder(t, f.brokers, "in", from, from+30_000, 200, 15*time.Millisecond, 100)
	f.killInTurn(w, 6, feed)
	n := feed.wait()
	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	table, err := txntest.ReadTable(ctx, f.brokers, "kills-sums-changelog")
	require.NoError(t, err)
	require.Equal(t, expectedWithWarmUp(from, n, 100), table)
	f.stopAll(w["w1"], w["w2"])
}
