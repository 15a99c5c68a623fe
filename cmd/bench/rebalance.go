package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// The rebalance benchmark: a worker process whose 8 tasks hold K keys in
// all (-rebalance-keys, default 1,000,000), processing feedRate records/s,
// sees a second worker join the group; the cooperative rebalance revokes
// half its partitions, which aborts its open transaction. What is timed is
// the worker that keeps its other tasks: from its revoke (franz-go's
// "on_revoke" log line) to its first commit after the transaction the
// rebalance aborted (see keptAfterRevoke). The joining
// worker's exec to its first commit (it restores the tasks it takes over
// from their changelogs) is reported beside it. The second worker then
// leaves, the first takes every partition back, and once the group's
// offsets cover the input fed so far the next cycle starts; -runs cycles,
// then every count is checked.

// rebalanceResult is one rebalance measurement.
type rebalanceResult struct {
	keys    int64
	cycle   int
	kept    time.Duration // the staying worker's revoke to its next commit
	joined  time.Duration // the joining worker's exec to its first commit
	aborted bool          // the staying worker logged a transaction aborted by the rebalance
	// restores and replayed: the staying worker's tasks restored between
	// its revoke and that commit, and the changelog records they replayed.
	restores int
	replayed int64
}

// revokeLog is the line franz-go logs (at info, which the worker logs at
// debug) when a rebalance revokes partitions from a transactional session.
const revokeLog = "transact session in on_revoke"

// measureRebalance runs the rebalance benchmark (see the top of this
// file) with keys keys, cycles times, and returns one result per cycle.
func measureRebalance(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, keys int64, cycles int, progress io.Writer) ([]rebalanceResult, error) {
	var rs []rebalanceResult
	a, err := newStateApp(ctx, o, e, adm, fmt.Sprintf("%s-rebalance-%d", prefix, keys), keys, 0, progress)
	if a != nil {
		defer a.cleanup(adm)
	}
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout+time.Duration(cycles)*time.Minute)
	defer cancel()
	config := func(instance string) childConfig {
		cfg := a.config(o, e)
		cfg.Instance, cfg.StateDir = instance, filepath.Join(a.dir, instance)
		return cfg
	}
	w1, err := a.startFilled(wctx, o, adm, config("w1"), "w1", fmt.Sprintf("rebalance %d keys", keys), progress)
	if err != nil {
		return nil, err
	}
	defer func() { w1.Kill() }()
	feed, err := startFeeder(wctx, e.brokers, a.in, keys, keys, o.valueSize, feedRate)
	if err != nil {
		return nil, err
	}
	defer feed.stop()
	for c := 1; c <= cycles; c++ {
		if o.quiet > 0 {
			waitQuiet(quietCPUs, o.quiet)
		}
		time.Sleep(feedBeforeKill)
		joinAt := time.Now()
		w2, err := startChild(config("w2"), o.workerEnv(), fmt.Sprintf("w2-%d", c), progress)
		if err != nil {
			return rs, err
		}
		err = w2.wait(wctx, func(st *childState) bool { return !st.firstCommit.IsZero() })
		if err == nil {
			err = w1.wait(wctx, func(st *childState) bool { return !firstAfter(st.revokes, joinAt).IsZero() })
		}
		if err != nil {
			w2.Kill()
			return rs, fmt.Errorf("cycle %d: %w", c, err)
		}
		res := rebalanceResult{keys: keys, cycle: c, joined: w2.state().firstCommit.Sub(w2.Started)}
		var revoked time.Time
		if revoked, res.kept, res.aborted, err = keptAfterRevoke(wctx, w1, joinAt); err != nil {
			w2.Kill()
			return rs, fmt.Errorf("cycle %d: %w", c, err)
		}
		for _, r := range w1.state().restored {
			if r.at.After(revoked) && r.at.Before(revoked.Add(res.kept)) {
				res.restores++
				res.replayed += r.records
			}
		}
		fmt.Fprintf(progress, "rebalance %d keys, cycle %d: the staying worker committed %v after its revoke (transaction aborted: %v; %d tasks restored, %d records replayed meanwhile); the joining one %v after its exec\n",
			keys, c, res.kept.Round(time.Millisecond), res.aborted, res.restores, res.replayed, res.joined.Round(time.Millisecond))
		rs = append(rs, res)
		if err := w2.Stop(stopTimeout); err != nil {
			return rs, err
		}
		ends, _, err := inputEnds(ctx, adm, a.in)
		if err != nil {
			return rs, err
		}
		if err := waitOffsets(wctx, adm, w1, a.app, a.in, ends, nil); err != nil {
			return rs, fmt.Errorf("cycle %d: after the second worker left: %w", c, err)
		}
	}
	return rs, a.finish(ctx, wctx, o, e, adm, w1, feed, fmt.Sprintf("%d rebalances", cycles))
}

// keptAfterRevoke returns how long after its first revoke since t worker
// w committed again, and whether the rebalance aborted a transaction of
// w's. The revoke aborts the transaction open then, or the next one when
// it came while w was committing (franz-go aborts the session's next
// commit): the time runs to the first commit after that abort. A revoke
// that aborts nothing within abortWait runs to the first commit after it.
func keptAfterRevoke(ctx context.Context, w *childProc, t time.Time) (revoked time.Time, kept time.Duration, aborted bool, err error) {
	const abortWait = 10 * time.Second
	actx, cancel := context.WithTimeout(ctx, abortWait)
	defer cancel()
	err = w.wait(actx, func(st *childState) bool {
		revoked = firstAfter(st.revokes, t)
		abort := firstAfter(st.rebalanceAborts, revoked)
		return !abort.IsZero() && !firstAfter(st.commitsAt, abort).IsZero()
	})
	if err == nil {
		st := w.state()
		return revoked, firstAfter(st.commitsAt, firstAfter(st.rebalanceAborts, revoked)).Sub(revoked), true, nil
	}
	if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		return revoked, 0, false, err
	}
	if err := w.wait(ctx, func(st *childState) bool { return !firstAfter(st.commitsAt, revoked).IsZero() }); err != nil {
		return revoked, 0, false, err
	}
	return revoked, firstAfter(w.state().commitsAt, revoked).Sub(revoked), false, nil
}

// firstAfter returns the first of ts after t, or the zero time.
func firstAfter(ts []time.Time, t time.Time) time.Time {
	for _, at := range ts {
		if at.After(t) {
			return at
		}
	}
	return time.Time{}
}

func reportRebalance(w io.Writer, o options, rs []rebalanceResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "rebalance: a worker process (count topology, exactly_once, %d partitions) with K keys in its store, processing %d records/s;\n", o.partitions, feedRate)
	fmt.Fprintf(w, " a second worker joins and takes half the partitions: the staying worker's revoke to its next commit\n")
	fmt.Fprintf(w, "%10s %5s %10s %9s %9s %10s %8s\n", "keys", "cycle", "kept", "restores", "replayed", "joined", "aborted")
	var kept []float64
	for _, r := range rs {
		fmt.Fprintf(w, "%10d %5d %10v %9d %9d %10v %8v\n", r.keys, r.cycle, r.kept.Round(time.Millisecond), r.restores, r.replayed, r.joined.Round(time.Millisecond), r.aborted)
		kept = append(kept, float64(r.kept))
	}
	slices.Sort(kept)
	m := kept[len(kept)/2]
	if len(kept)%2 == 0 {
		m = (kept[len(kept)/2-1] + kept[len(kept)/2]) / 2
	}
	fmt.Fprintf(w, "%-36s = %v\n", "rebalance kept (median)", time.Duration(m).Round(time.Millisecond))
	fmt.Fprintln(w, "(kept: the staying worker's revoke to its first commit after the transaction the rebalance aborted; joined: the")
	fmt.Fprintln(w, " joining worker's exec to its first commit, restores included; aborted: the rebalance aborted a transaction of the")
	fmt.Fprintln(w, " staying worker, as it nearly always does; without one, kept runs to its first commit after the revoke; restores,")
	fmt.Fprintln(w, " replayed: the staying worker's tasks restored meanwhile, and the changelog records they replayed)")
}
