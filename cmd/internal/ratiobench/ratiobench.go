// Package ratiobench runs a benchmark's baseline and variant interleaved
// (baseline, variant, baseline, variant, ...) a number of times and
// reports each run's rate, the median rate of each and the ratio of the
// medians, with the per-run ratios, against a target; RunUntil times a
// variant that runs a loop of its own until a condition holds.
// cmd/relaybench and cmd/sinkbench use it; what a run does is theirs.
package ratiobench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// Variant is one side of the comparison.
type Variant struct {
	// Name names the variant in each run's line and in errors ("raw").
	Name string
	// Label names the variant in the median and ratio lines
	// ("raw_select_produce").
	Label string
	// Run runs the variant once over Bench.Units units and returns the
	// time it measured. id is Name, "-" and the run's index from 0
	// ("raw-0"): a name for what the run creates (a topic, a group).
	Run func(ctx context.Context, id string) (time.Duration, error)
}

// Bench is a comparison of Variant against Baseline.
type Bench struct {
	// Units is how many units each run processes: a run's rate is Units
	// over its time.
	Units int
	// Unit names a unit in the rate lines ("rows" prints "rows/s").
	Unit string
	// Runs is how many times each side runs.
	Runs int
	// Target is the least Variant/Baseline ratio the benchmark wants; it
	// is only printed.
	Target float64
	// Baseline and Variant are the two sides; the ratio is
	// Variant/Baseline.
	Baseline, Variant Variant
	// Prepare, if not nil, runs before each run with the run's Variant
	// and id; its error ends the benchmark as it is.
	Prepare func(ctx context.Context, v Variant, id string) error
	// Check, if not nil, runs after each run; its error ends the
	// benchmark as it is.
	Check func(ctx context.Context, v Variant) error
}

// Result is what Run measured: the rates of each run, in order.
type Result struct {
	Baseline, Variant []float64
}

// Run runs Baseline and Variant Runs times each, interleaved, and writes
// to w a line per run, then a median line per side and the ratio line:
//
//	run 1 raw      707680 rows/s (282ms)
//	...
//	raw_select_produce    707680 rows/s (median)
//	outbox_relay          535240 rows/s (median)
//	outbox_relay/raw_select_produce 0.76 (target >= 0.50; per-run ratios 0.76 0.58 0.76)
//
// Runs must be at least 1. A run's error is returned wrapped with the variant's Name; the
// benchmark stops at the first error.
func (b Bench) Run(ctx context.Context, w io.Writer) (Result, error) {
	var res Result
	if b.Runs < 1 {
		return res, fmt.Errorf("runs is %d, want at least 1", b.Runs)
	}
	for i := range b.Runs {
		for _, side := range []struct {
			v   Variant
			out *[]float64
		}{{b.Baseline, &res.Baseline}, {b.Variant, &res.Variant}} {
			v := side.v
			id := v.Name + "-" + strconv.Itoa(i)
			if b.Prepare != nil {
				if err := b.Prepare(ctx, v, id); err != nil {
					return res, err
				}
			}
			d, err := v.Run(ctx, id)
			if err != nil {
				return res, fmt.Errorf("%s: %w", v.Name, err)
			}
			if b.Check != nil {
				if err := b.Check(ctx, v); err != nil {
					return res, err
				}
			}
			rate := float64(b.Units) / d.Seconds()
			*side.out = append(*side.out, rate)
			fmt.Fprintf(w, "run %d %-5s %9.0f %s/s (%v)\n", i+1, v.Name, rate, b.Unit, d.Round(time.Millisecond))
		}
	}
	mb, mv := Median(res.Baseline), Median(res.Variant)
	width := max(len(b.Baseline.Label), len(b.Variant.Label))
	fmt.Fprintf(w, "%-*s %9.0f %s/s (median)\n", width, b.Baseline.Label, mb, b.Unit)
	fmt.Fprintf(w, "%-*s %9.0f %s/s (median)\n", width, b.Variant.Label, mv, b.Unit)
	fmt.Fprintf(w, "%s/%s %.2f (target >= %.2f; per-run ratios", b.Variant.Label, b.Baseline.Label, mv/mb, b.Target)
	for i := range res.Baseline {
		fmt.Fprintf(w, " %.2f", res.Variant[i]/res.Baseline[i])
	}
	fmt.Fprintln(w, ")")
	return res, nil
}

// Median returns the middle of xs once sorted (of an even count, the
// upper of the two middle ones); xs must not be empty. xs is not changed.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// RunUntil measures a variant that runs a loop of its own (a relay, a
// sink): it runs run in a goroutine and calls done every interval, on
// the calling goroutine, until done returns true; it then cancels run's
// context, waits for run to return and returns the time at which done
// returned true. run returning first is an error: its own, or "the what
// stopped" when it returned nil.
func RunUntil(ctx context.Context, what string, interval time.Duration, run func(context.Context) error, done func() bool) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			if err == nil {
				err = fmt.Errorf("the %s stopped", what)
			}
			return time.Time{}, err
		case <-tick.C:
			if done() {
				end := time.Now()
				cancel()
				if err := <-errc; err != nil {
					return time.Time{}, err
				}
				return end, nil
			}
		}
	}
}
