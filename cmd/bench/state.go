package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kadm"
)

// The state benchmarks: what a stateful topology costs next to the raw
// loop, how fast a task's state comes back from its changelog, how long a
// SIGKILLed worker takes to commit again, and how much memory a worker
// with a large store needs.
//
//	sluice_eos_count  a variant: stream.From(in).GroupByKey().Count(counts)
//	                  .ToStream().To(out), exactly_once, over input with
//	                  -count-keys distinct keys (count.go)
//	restore           a worker on an empty state directory restores a
//	                  changelog of -restore-records records, against a raw
//	                  read_committed consume of the same partitions
//	                  (restore.go)
//	restart           restart.go
//	rebalance         rebalance.go
//	rss               rss.go
//	bounded           a dedup worker's state, RSS and disk over hours of
//	                  event time (bounded.go)

// stateBenchNames are the benchmarks -only selects besides the variants.
var stateBenchNames = []string{"restore", "restart", "rebalance", "rss", "bounded"}

// stateBenches says which of them run.
type stateBenches struct{ restore, restart, rebalance, rss, bounded bool }

func (b *stateBenches) choose(name string) bool {
	switch name {
	case "restore":
		b.restore = true
	case "restart":
		b.restart = true
	case "rebalance":
		b.rebalance = true
	case "rss":
		b.rss = true
	case "bounded":
		b.bounded = true
	default:
		return false
	}
	return true
}

// parseKeys parses -restart-keys.
func parseKeys(s string) ([]int64, error) {
	var keys []int64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := strconv.ParseInt(f, 10, 64)
		if err != nil || k <= 0 {
			return nil, fmt.Errorf("-restart-keys: %q is not a positive number", f)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// stateResults holds the state benchmarks' figures.
type stateResults struct {
	rb      *restoreBench
	restore []restoreResult
	restart []restartResult
	rss     *rssResult
	rebal   []rebalanceResult
	bounded *boundedResult
	// wrong are the outputs found wrong after a measurement.
	wrong []string
}

// restoreRun measures the restore once (again, like a variant, when
// other processes disturbed it); the changelog is written on first use.
func (sr *stateResults) restoreRun(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, runNo int, progress io.Writer) error {
	if sr.rb == nil {
		rb, err := setupRestore(ctx, o, e, prefix, progress)
		sr.rb = rb
		if err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		res, err := sr.rb.measure(ctx, o, e, adm, runNo, progress)
		if err != nil {
			return err
		}
		fmt.Fprintf(progress, "run %d: %-18s %9.0f rec/s  (%d records, took %v, span %v, wall %v)  raw read_committed %9.0f rec/s  (%d records in %v)  others %.2f\n",
			runNo, "restore", res.rate, res.records, res.took.Round(time.Millisecond), res.span.Round(time.Millisecond), res.wall.Round(time.Millisecond),
			res.rawRate, res.rawRecords, res.rawElapsed.Round(time.Millisecond), res.others)
		if o.maxOthers <= 0 || res.others <= o.maxOthers || attempt > o.retries {
			sr.restore = append(sr.restore, res)
			return nil
		}
		fmt.Fprintf(progress, "run %d: restore: other processes kept %.2f CPUs busy meanwhile (-max-others %.2f); measuring again\n", runNo, res.others, o.maxOthers)
	}
}

// once runs the benchmarks that run once per invocation: restart,
// rebalance, rss, bounded.
func (sr *stateResults) once(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, b stateBenches, restartKeys []int64, progress io.Writer) error {
	if b.restart {
		for _, k := range restartKeys {
			res, err := measureRestart(ctx, o, e, adm, prefix, k, o.runs, progress)
			if cf := (*checkFailure)(nil); errors.As(err, &cf) {
				sr.wrong = append(sr.wrong, fmt.Sprintf("restart, %d keys: %v", k, err))
				fmt.Fprintf(progress, "restart %d keys: WRONG OUTPUT: %v\n", k, err)
			} else if err != nil {
				return fmt.Errorf("restart, %d keys: %w", k, err)
			}
			sr.restart = append(sr.restart, res...)
		}
	}
	if b.rebalance {
		res, err := measureRebalance(ctx, o, e, adm, prefix, o.rebalanceKeys, o.runs, progress)
		if cf := (*checkFailure)(nil); errors.As(err, &cf) {
			sr.wrong = append(sr.wrong, fmt.Sprintf("rebalance, %d keys: %v", o.rebalanceKeys, err))
			fmt.Fprintf(progress, "rebalance %d keys: WRONG OUTPUT: %v\n", o.rebalanceKeys, err)
		} else if err != nil {
			return fmt.Errorf("rebalance, %d keys: %w", o.rebalanceKeys, err)
		}
		sr.rebal = res
	}
	if b.rss {
		res, err := measureRSS(ctx, o, e, adm, prefix, o.rssKeys, progress)
		if cf := (*checkFailure)(nil); errors.As(err, &cf) {
			sr.wrong = append(sr.wrong, fmt.Sprintf("rss, %d keys: %v", o.rssKeys, err))
			fmt.Fprintf(progress, "rss %d keys: WRONG OUTPUT: %v\n", o.rssKeys, err)
		} else if err != nil {
			return fmt.Errorf("rss, %d keys: %w", o.rssKeys, err)
		}
		sr.rss = &res
	}
	if b.bounded {
		res, err := measureBounded(ctx, o, e, adm, prefix, progress)
		if cf := (*checkFailure)(nil); errors.As(err, &cf) {
			sr.wrong = append(sr.wrong, fmt.Sprintf("bounded: %v", err))
			fmt.Fprintf(progress, "bounded: WRONG OUTPUT: %v\n", err)
		} else if err != nil {
			return fmt.Errorf("bounded: %w", err)
		}
		sr.bounded = &res
	}
	return nil
}

func (sr *stateResults) report(w io.Writer, o options) {
	reportRestore(w, o, sr.restore)
	reportRestart(w, o, sr.restart)
	reportRebalance(w, o, sr.rebal)
	reportRSS(w, sr.rss)
	reportBounded(w, sr.bounded)
}

// failed returns an error when an output was found wrong.
func (sr *stateResults) failed() error {
	if len(sr.wrong) == 0 {
		return nil
	}
	return fmt.Errorf("wrong output (the figures above stand): %s", strings.Join(sr.wrong, "; "))
}

// cleanup deletes the restore benchmark's topics.
func (sr *stateResults) cleanup(adm *kadm.Client) {
	if sr.rb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm.DeleteTopics(ctx, sr.rb.in, sr.rb.out, sr.rb.changelog, topology.DLQTopic(sr.rb.app))
}

// heapProfile returns the path of a worker's heap profile called name:
// in the -cpuprofile directory, or the temporary one.
func (o options) heapProfile(name string) string {
	dir := o.cpuprofile
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, name)
}

// workerSettings lists the worker settings -worker-fetch-max-bytes and
// -worker-env change, each after a space ("" for none).
func (o options) workerSettings() string {
	var s string
	if o.workerFetchMaxBytes > 0 {
		s += fmt.Sprintf(" FetchMaxBytes=%d", o.workerFetchMaxBytes)
	}
	for _, kv := range o.workerEnv() {
		s += " " + kv
	}
	return s
}

// workerEnv is what -worker-env adds to the worker processes' environment.
func (o options) workerEnv() []string {
	var env []string
	for _, kv := range strings.Split(o.workerEnvList, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			env = append(env, kv)
		}
	}
	return env
}
