package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// The rss benchmark fills a worker process's store to -rss-keys keys and
// processes on; it reports the process's peak RSS (VmHWM) at the end.

// rssResult is the peak memory of a worker with a large store.
type rssResult struct {
	keys    int64
	n       int64
	elapsed time.Duration
	hwm     int64 // VmHWM at the end
	final   int64 // VmRSS at the end
	peakAt  int64 // input records committed when RSS peaked
	// timeline: RSS as the committed input grew, one entry per tenth.
	timeline []rssPoint
	peak     memSample // the worker's own report with the largest RSS
	profile  string    // heap profile at the largest live heap
	settings string    // non-default worker settings
}

type rssPoint struct {
	committed int64
	rss       int64
	at        time.Duration
}

// measureRSS fills a worker's store with keys distinct keys, processes a
// tenth as many records more, and reads its peak RSS.
func measureRSS(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, keys int64, progress io.Writer) (rssResult, error) {
	res := rssResult{keys: keys}
	a, err := newStateApp(ctx, o, e, adm, fmt.Sprintf("%s-rss-%d", prefix, keys), keys, keys/10, progress)
	if a != nil {
		defer a.cleanup(adm)
	}
	if err != nil {
		return res, err
	}
	res.n = a.n
	cfg := a.config(o, e)
	cfg.MemEvery = time.Second
	cfg.HeapProfile = o.heapProfile(fmt.Sprintf("rss-%d-heap.pprof", keys))
	res.profile = cfg.HeapProfile
	res.settings = o.workerSettings()
	runtime.GC()
	c, err := startChild(cfg, o.workerEnv(), "rss", progress)
	if err != nil {
		return res, err
	}
	defer c.Kill()
	fmt.Fprintf(progress, "rss %d keys: processing %d records...\n", keys, a.n)
	wctx, cancel := context.WithTimeout(ctx, 4*o.timeout)
	defer cancel()
	pid := c.Pid()
	next := int64(0)
	var lastLog time.Time
	err = waitOffsets(wctx, adm, c, a.app, a.in, a.ends, func(got kadm.OffsetResponses) {
		committed := committedTotal(got, a.in)
		rss := procStatus(pid)["VmRSS"]
		if rss > 0 && committed >= next {
			res.timeline = append(res.timeline, rssPoint{committed: committed, rss: rss, at: time.Since(c.Started)})
			next = committed + a.n/10
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(progress, "rss %d keys: %d of %d committed, RSS %d MB\n", keys, committed, a.n, rss>>20)
		}
		if st := procStatus(pid); st["VmHWM"] > res.hwm {
			res.hwm, res.peakAt = st["VmHWM"], committed
		}
	})
	if err != nil {
		return res, err
	}
	res.elapsed = time.Since(c.Started)
	st := procStatus(pid)
	res.hwm, res.final = st["VmHWM"], st["VmRSS"]
	res.timeline = append(res.timeline, rssPoint{committed: a.n, rss: res.final, at: res.elapsed})
	res.peak = c.state().memPeak
	if err := c.Stop(stopTimeout); err != nil {
		return res, err
	}
	if err := a.check(ctx, o, e); err != nil {
		return res, &checkFailure{err}
	}
	return res, nil
}

func reportRSS(w io.Writer, r *rssResult) {
	if r == nil {
		return
	}
	mb := func(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
	fmt.Fprintln(w)
	settings := "defaults"
	if r.settings != "" {
		settings = strings.TrimSpace(r.settings)
	}
	fmt.Fprintf(w, "rss: a worker process (count topology, exactly_once; worker settings: %s) fills its store with %d keys, then processes %d records more (%v)\n",
		settings, r.keys, r.n-r.keys, r.elapsed.Round(time.Second))
	var tl []string
	for _, p := range r.timeline {
		tl = append(tl, fmt.Sprintf("%dk:%s", p.committed/1000, mb(p.rss)))
	}
	fmt.Fprintf(w, "  RSS by input records committed: %s\n", strings.Join(tl, ", "))
	fmt.Fprintf(w, "  VmHWM %s, reached by %d input records committed; RSS at the end %s\n", mb(r.hwm), r.peakAt, mb(r.final))
	if p := r.peak; p.rss > 0 {
		fmt.Fprintf(w, "  at its largest reported RSS (%s): Go runtime holds %s (heap objects %s, heap goal %s); outside Go (cgo: Pebble's cache and memtables) about %s\n",
			mb(p.rss), mb(p.goResident()), mb(p.heapObjects), mb(p.heapGoal), mb(max(0, p.rss-p.goResident())))
	}
	fmt.Fprintf(w, "  heap profile at the largest live heap: %s\n", r.profile)
	verdict := "ok"
	if r.hwm > 300<<20 {
		verdict = "ABOVE TARGET"
	}
	fmt.Fprintf(w, "%-36s = %s (target <= 300 MB) %s\n", "peak RSS, "+strconv.FormatInt(r.keys, 10)+" keys", mb(r.hwm), verdict)
}
