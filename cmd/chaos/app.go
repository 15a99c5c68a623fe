package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// app is one example app under chaos: its topics, the flags its workers
// run with, the input the feeders write, and the check of its output.
//
// The ground truth of a check is the input as the broker holds it when the
// run is over (read back with read_committed), not what the feeders meant
// to write: a record the broker lost, or wrote twice, is the broker's
// doing, which inputLoss reports apart from the app's violations.
type app interface {
	// name is the example app's name (`runner run NAME`) and its app id.
	name() string
	// topics are the topics to create before the workers start.
	topics() []topicSpec
	// args are `runner run`'s arguments after "run": the app's name and
	// its own flags.
	args() []string
	// setup writes what must be in place before the first input record
	// (enrich's customers); nil when nothing is.
	setup(ctx context.Context, cl *kgo.Client) error
	// record returns input record seq (from 0 on, one feeder per app
	// calling it in order), its Topic set. It may return nil to write
	// nothing for seq.
	record(seq int64) *kgo.Record
	// finish returns the records written once the input is over, before
	// the drain (revenue's closers, which close every open window).
	finish(fed int64) []*kgo.Record
	// verify reads the input topics and the outputs back with
	// read_committed, each with both fetch limits, and checks the output
	// against a recomputation from that input.
	verify(ctx context.Context, brokers []string) (appReport, error)
	// outputs are the topics whose record counts the cross-client check
	// compares: the app's sink and its DLQ.
	outputs() []string
}

// topicSpec is a topic to create.
type topicSpec struct {
	name       string
	partitions int32
	configs    map[string]*string
}

// appReport is what a check of one app found.
type appReport struct {
	app string
	// input is how many input records the check read back; expected how
	// many output records it expected (the DLQ's included).
	input, expected int64
	// counts are the records read per output topic (the cross-client
	// check compares them).
	counts map[string]int64
	// duplicates are output records beyond one per expected record; lost
	// expected records not in the output; mismatches output records that
	// are not what the recomputation says (a wrong value, a record never
	// expected, a dead letter without its headers).
	duplicates, lost, mismatches int64
	// examples name a few violations, for the log of a failing run.
	examples []string
}

// clean reports whether the app's output is exactly what was expected.
func (r appReport) clean() bool { return r.duplicates == 0 && r.lost == 0 && r.mismatches == 0 }

// note records a violation example (the first few only).
func (r *appReport) note(format string, args ...any) {
	if len(r.examples) < 10 {
		r.examples = append(r.examples, fmt.Sprintf(format, args...))
	}
}

func (r appReport) String() string {
	s := fmt.Sprintf("%s: input=%d expected=%d duplicates=%d lost=%d mismatches=%d", r.app, r.input, r.expected, r.duplicates, r.lost, r.mismatches)
	if len(r.examples) > 0 {
		s += "\n    " + strings.Join(r.examples, "\n    ")
	}
	return s
}

// apps returns the four example apps under chaos.
func apps() []app {
	return []app{newPassthrough(), newDedup(), newEnrich(), newRevenue()}
}
