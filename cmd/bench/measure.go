package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kadm"
)

// result is one measurement.
type result struct {
	rate    float64       // records per second, start to all committed
	elapsed time.Duration // start to all committed
	startup time.Duration // start to the first fetched batch
	commits int64         // EndTxn or OffsetCommit responses
	fetched int64         // input records fetched; more than n: refetches
	faults  int64         // page faults of this process
	sys     float64       // CPUs this process kept busy in the kernel
	cpu     float64       // CPUs this process kept busy (loop, broker, bench)
	others  float64       // CPUs other processes kept busy; -1: unknown
	hung    bool          // the loop did not stop when cancelled
}

// stopTimeout is how long a loop may take to stop once cancelled.
const stopTimeout = 30 * time.Second

// quietCPUs is how many CPUs other processes may keep busy for the
// machine to count as quiet enough to start a measurement.
const quietCPUs = 0.2

// measure runs one variant once: set up its topics and input (not
// timed), time the loop until every input record's offset is committed,
// stop it, and check its output.
func measure(ctx context.Context, o options, e env, adm *kadm.Client, v variant, t topics, runNo int, progress io.Writer) (result, error) {
	fmt.Fprintf(progress, "run %d: %-18s producing %d input records...\n", runNo, v.name, o.n)
	if err := broker.CreateTopics(ctx, e.brokers, int32(o.partitions), t.in, t.out); err != nil {
		return result{}, err
	}
	produce := func() error { return txntest.Produce(ctx, e.brokers, t.in, 0, o.n, v.keys, o.valueSize) }
	if v.produce != nil {
		produce = func() error { return v.produce(ctx, e.brokers, t.in, o.n, o.valueSize) }
	}
	if err := produce(); err != nil {
		return result{}, fmt.Errorf("producing the input: %w", err)
	}
	listed, err := adm.ListEndOffsets(ctx, t.in)
	if err != nil {
		return result{}, fmt.Errorf("listing the input's end offsets: %w", err)
	}
	ends := map[int32]int64{}
	var total int64
	listed.Each(func(l kadm.ListedOffset) {
		ends[l.Partition] = l.Offset
		total += l.Offset
	})
	if total != o.n {
		return result{}, fmt.Errorf("the input holds %d records, want %d", total, o.n)
	}

	// Start every variant from a collected heap (with the embedded broker
	// the previous variant's garbage is large) and, on a shared machine,
	// when other work leaves the CPUs alone.
	runtime.GC()
	if o.quiet > 0 {
		if load := waitQuiet(quietCPUs, o.quiet); load >= quietCPUs {
			fmt.Fprintf(progress, "run %d: %s: other processes still keep %.1f CPUs busy after %v; measuring anyway\n", runNo, v.name, load, o.quiet)
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(filepath.Join(o.cpuprofile, fmt.Sprintf("%s-r%d.pprof", v.name, runNo)))
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return result{}, err
		}
	}
	p := newProbe(t.out, o.n)
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	waitCtx, stopWait := context.WithTimeout(ctx, o.timeout)
	defer stopWait()
	errc := make(chan error, 1)
	before := sampleCPU()
	start := time.Now()
	go func() {
		errc <- v.run(loopCtx, e, t, p)
		stopWait() // a loop that returned early will not finish
	}()
	done, waitErr := p.waitCommitted(waitCtx, adm, t.app, t.in, ends)
	after := sampleCPU()
	if o.cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	stopLoop()
	var loopErr error
	hung := false
	select {
	case loopErr = <-errc:
	case <-time.After(stopTimeout):
		// A stop that hangs is a bug of the loop: show where it hangs.
		// The figure stands (every record was committed before the
		// stop); the hung loop's goroutines are left behind.
		fmt.Fprintf(progress, "run %d: %s did not stop within %v of cancellation; goroutines:\n", runNo, v.name, stopTimeout)
		pprof.Lookup("goroutine").WriteTo(progress, 1)
		hung = true
	}
	if waitErr != nil {
		return result{}, errors.Join(waitErr, loopErr)
	}
	if loopErr != nil {
		return result{}, fmt.Errorf("loop failed after it finished: %w", loopErr)
	}
	res := result{
		elapsed: done.Sub(start),
		commits: p.commits.Load(),
		fetched: p.fetched.Load(),
		hung:    hung,
	}
	res.rate = float64(o.n) / res.elapsed.Seconds()
	res.cpu = (after.self - before.self).Seconds() / res.elapsed.Seconds()
	res.others = othersCPU(before, after, res.elapsed)
	res.faults = after.faults - before.faults
	res.sys = (after.sys - before.sys).Seconds() / res.elapsed.Seconds()
	if ff := p.firstFetch.Load(); ff != 0 {
		res.startup = time.Unix(0, ff).Sub(start)
	}

	if o.verify {
		vctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		if v.check != nil {
			if err := v.check(vctx, e, t, o.n); err != nil {
				return result{}, fmt.Errorf("verifying the output: %w", err)
			}
			return res, nil
		}
		rep, err := txntest.Verify(vctx, e.brokers, t.out, o.n)
		if err != nil {
			return result{}, fmt.Errorf("verifying the output: %w", err)
		}
		if rep.NumMissing > 0 || rep.Foreign > 0 || (v.eos && rep.Duplicates > 0) {
			return result{}, fmt.Errorf("wrong output: %v", rep)
		}
		if rep.Duplicates > 0 {
			fmt.Fprintf(progress, "run %d: %s output has %d duplicates (allowed at_least_once)\n", runNo, v.name, rep.Duplicates)
		}
	}
	return res, nil
}
