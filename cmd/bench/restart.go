package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// The restart benchmark runs a worker in its own process (worker.go; the
// bench's side in childproc.go): it fills the worker's store to K keys
// (-restart-keys, each size in turn), SIGKILLs it while it processes
// more, restarts it with the same instance id and state directory, and
// times the new process from its exec to its first committed transaction.

// feedRate is the records/s fed to the restart benchmark's input once
// the fill is committed, for feedBeforeKill before the kill and until a
// second after the restarted worker's first commit: the worker is killed,
// and comes back, mid-stream, with about the same small backlog whatever
// the store's size.
const (
	feedRate       = 20_000
	feedBeforeKill = 2 * time.Second
)

// restartResult is one restart measurement.
type restartResult struct {
	keys            int64
	cycle           int           // which kill of the same store
	filled          time.Duration // the first worker's start to its store holding every key
	fill            time.Duration // the first worker's start to its kill
	committedAtKill int64         // input records committed when it was killed
	lag             int64         // changelog records past the tasks' checkpoints at the kill
	lagTasks        []string      // task:records of those behind
	restart         time.Duration // the new process's exec to its first commit
	allTasks        time.Duration // exec to the last of its tasks restored (every partition processing again)
	toMain          time.Duration // exec to main
	toFetch         time.Duration // exec to the first fetched batch
	restoredTasks   int
	restored        int64         // changelog records replayed before the first commit
	restoreTook     time.Duration // their restore time, summed over the tasks
	firstTxn        int64         // input records of the first commit
	early           []string      // what happened before the first commit
	restores        []string      // every restore of the restarted worker
	others          float64
}

// measureRestart fills a worker's store to keys keys; then, cycles times,
// lets it process a live stream for feedBeforeKill, SIGKILLs it, restarts
// it and times its way back to a commit; then lets the last one finish
// and checks the counts (every record counted exactly once across the
// kills). It returns one result per cycle.
func measureRestart(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, keys int64, cycles int, progress io.Writer) ([]restartResult, error) {
	var rs []restartResult
	a, err := newStateApp(ctx, o, e, adm, fmt.Sprintf("%s-restart-%d", prefix, keys), keys, 0, progress)
	if a != nil {
		defer a.cleanup(adm)
	}
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout+time.Duration(cycles)*time.Minute)
	defer cancel()
	w, err := a.startFilled(wctx, o, adm, a.config(o, e), "first", fmt.Sprintf("restart %d keys", keys), progress)
	if err != nil {
		return nil, err
	}
	defer func() { w.Kill() }()
	filled := time.Since(w.Started)
	fmt.Fprintf(progress, "restart %d keys: store filled after %v\n", keys, filled.Round(time.Millisecond))
	// Every key is in the store; the worker goes on with a live stream.
	feed, err := startFeeder(wctx, e.brokers, a.in, keys, keys, o.valueSize, feedRate)
	if err != nil {
		return nil, err
	}
	defer feed.stop()
	for c := 1; c <= cycles; c++ {
		res := restartResult{keys: keys, cycle: c, filled: filled}
		if o.quiet > 0 {
			// The restart is timed: start it on a quiet machine if there
			// is one (the worker keeps up with the feed meanwhile).
			waitQuiet(quietCPUs, o.quiet)
		}
		time.Sleep(feedBeforeKill)
		if err := w.Alive(); err != nil {
			return rs, err
		}
		w.Kill()
		res.fill = time.Since(w.Started)
		if got, err := adm.FetchOffsets(ctx, a.app); err == nil {
			res.committedAtKill = committedTotal(got, a.in)
		}
		res.lag, res.lagTasks, err = checkpointLag(ctx, adm, a.dir, changelogOf(a.app))
		if err != nil {
			return rs, err
		}
		fmt.Fprintf(progress, "restart %d keys, cycle %d: SIGKILLed with %d input records committed (%d fed so far), the tasks' checkpoints %d changelog offsets behind; restarting\n",
			keys, c, res.committedAtKill, feed.produced()-keys, res.lag)

		runtime.GC()
		cfg := a.config(o, e)
		if o.cpuprofile != "" {
			cfg.CPUProfile = filepath.Join(o.cpuprofile, fmt.Sprintf("restart-%d-c%d.pprof", keys, c))
			cfg.Trace = filepath.Join(o.cpuprofile, fmt.Sprintf("restart-%d-c%d.trace", keys, c))
		}
		before := sampleCPU()
		w, err = startChild(cfg, o.workerEnv(), fmt.Sprintf("restarted-%d", c), progress)
		if err != nil {
			return rs, err
		}
		if err := w.wait(wctx, func(st *childState) bool { return !st.firstCommit.IsZero() }); err != nil {
			return rs, fmt.Errorf("waiting for the restarted worker's first commit: %w", err)
		}
		st := w.state()
		res.restart = st.firstCommit.Sub(w.Started)
		// The worker is another process: its CPU is not the others'.
		res.others = max(0, othersCPU(before, sampleCPU(), time.Since(w.Started))-procCPU(w.Pid()).Seconds()/time.Since(w.Started).Seconds())
		res.toMain = st.started.Sub(w.Started)
		if !st.firstFetch.IsZero() {
			res.toFetch = st.firstFetch.Sub(w.Started)
		}
		res.firstTxn = st.firstTxn
		res.early = st.early
		for _, r := range st.restored {
			if r.at.Before(st.firstCommit) {
				res.restoredTasks++
				res.restored += r.records
				res.restoreTook += r.took
			}
		}
		if err := w.wait(wctx, func(st *childState) bool { return len(st.restored) >= o.partitions }); err != nil {
			return rs, fmt.Errorf("waiting for the restarted worker's tasks: %w", err)
		}
		restored := w.state().restored
		res.allTasks = restored[len(restored)-1].at.Sub(w.Started)
		for _, r := range restored {
			res.restores = append(res.restores, fmt.Sprintf("%v task %s restored %d records in %v", r.at.Sub(w.Started).Round(time.Millisecond), r.task, r.records, r.took.Round(time.Millisecond)))
		}
		fmt.Fprintf(progress, "restart %d keys, cycle %d: first commit %v after the restart, every task back after %v\n", keys, c, res.restart.Round(time.Millisecond), res.allTasks.Round(time.Millisecond))
		rs = append(rs, res)
	}
	time.Sleep(time.Second)
	return rs, a.finish(ctx, wctx, o, e, adm, w, feed, fmt.Sprintf("%d SIGKILLs and restarts", cycles))
}

// procCPU returns the CPU time (user and system) a process has used so
// far, from /proc/<pid>/stat; 0 when unknown.
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command may hold spaces: the fields that follow it start after
	// its closing parenthesis; utime and stime are the 14th and 15th.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ 100
}

func reportRestart(w io.Writer, o options, rs []restartResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "restart: a worker process (count topology, exactly_once, %d partitions) with K keys in its store, processing %d records/s,\n", o.partitions, feedRate)
	fmt.Fprintf(w, " SIGKILLed and restarted at once with the same instance id and state directory; exec of the new process to its first commit\n")
	fmt.Fprintf(w, "%10s %5s %10s %9s %9s %9s %8s %10s %9s %9s %10s %6s\n", "keys", "cycle", "restart", "to main", "to fetch", "all tasks", "lag", "restored", "in", "1st txn", "killed at", "others")
	for _, r := range rs {
		fmt.Fprintf(w, "%10d %5d %10v %9v %9v %9v %8d %10d %9v %9d %10d %6.2f\n", r.keys, r.cycle, r.restart.Round(time.Millisecond), r.toMain.Round(time.Millisecond),
			r.toFetch.Round(time.Millisecond), r.allTasks.Round(time.Millisecond), r.lag, r.restored, r.restoreTook.Round(time.Millisecond), r.firstTxn, r.committedAtKill, r.others)
	}
	fmt.Fprintln(w, "(all tasks: to the last of the restarted worker's tasks restored, when every partition is processed again;")
	fmt.Fprintln(w, " lag: changelog offsets past the killed worker's checkpoints; restored: changelog records replayed before the first")
	fmt.Fprintln(w, " commit, in: their restore time summed over the tasks; 1st txn: input records of the first commit; killed at: input")
	fmt.Fprintln(w, " records committed when the worker was killed; others: CPUs other processes than the bench and the worker kept busy)")
	var keys []int64
	medians := map[int64]time.Duration{}
	for _, r := range rs {
		if _, ok := medians[r.keys]; !ok {
			keys = append(keys, r.keys)
		}
		medians[r.keys] = 0
	}
	for _, k := range keys {
		var ds []float64
		for _, r := range rs {
			if r.keys == k {
				ds = append(ds, float64(r.restart))
			}
		}
		slices.Sort(ds)
		m := ds[len(ds)/2]
		if len(ds)%2 == 0 {
			m = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
		medians[k] = time.Duration(m)
		verdict := "ok"
		if time.Duration(ds[len(ds)-1]) >= 2*time.Second {
			verdict = "BELOW TARGET"
		}
		fmt.Fprintf(w, "%-36s = %v median, max %v over %d restarts (target < 2s) %s\n", "restart to first commit, "+strconv.FormatInt(k, 10)+" keys",
			medians[k].Round(time.Millisecond), time.Duration(ds[len(ds)-1]).Round(time.Millisecond), len(ds), verdict)
	}
	if len(keys) > 1 {
		small, big := slices.Min(keys), slices.Max(keys)
		fmt.Fprintf(w, "%-36s = %.2f (medians, %d keys against %d keys: %.0fx the store)\n", "restart time ratio", medians[big].Seconds()/medians[small].Seconds(),
			big, small, float64(big)/float64(small))
	}
	if o.verbose {
		for _, r := range rs {
			fmt.Fprintf(w, "restart %d keys, cycle %d, before the first commit (since exec):\n  %s\n", r.keys, r.cycle, strings.Join(r.early, "\n  "))
			fmt.Fprintf(w, "restart %d keys, cycle %d: checkpoints behind at the kill (task:offsets) %v; every restore of the restarted worker:\n  %s\n", r.keys, r.cycle, r.lagTasks, strings.Join(r.restores, "\n  "))
		}
	}
}
