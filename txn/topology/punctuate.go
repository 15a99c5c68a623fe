package topology

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Punctuator is a Task whose operators run code on a schedule, not only
// per record (Kafka Streams' punctuation).
//
// Stream-time punctuators need nothing from the runtime: they fire inside
// Process, after the record that advanced the task's stream time past
// their due time, so their outputs and state writes belong to that
// record's transaction. Wall-clock punctuators fire when the runtime calls
// Punctuate, inside a batch like a poll's records: the runtime does so at
// least once per interval while the task is open, opening a transaction
// for them when no record arrives.
//
// The runtime also tells the task how each batch ended (Settle), so that
// what the task's punctuation derives from the batch (schedules made or
// cancelled, and, for a task without state, its stream time) goes back to
// where it was when the batch did not commit: its records are processed
// again, and must punctuate again as they did.
type Punctuator interface {
	Task
	// NextWallClock returns when the task's earliest wall-clock
	// punctuator is due; ok is false when it has none.
	NextWallClock() (due time.Time, ok bool)
	// Punctuate runs the wall-clock punctuators due at now (a time of the
	// runtime's injected clock) and appends their records to produce to
	// out, as Process does. It returns an error only when the topology's
	// error policy is to fail, or on an internal fault; the task must then
	// be closed.
	Punctuate(now time.Time, out []*kgo.Record) ([]*kgo.Record, error)
	// Settle tells the task how the batch ended: committed or not. A
	// StatefulTask hears it next to its Commit or Discard.
	Settle(committed bool)
}
