package batch

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
)

// NextPunctuation returns the earliest time at which a wall-clock
// punctuator of an open task is due; ok is false when no open task has
// one. The loop waits for input no longer than until then, and calls
// Punctuate in a batch once its clock reaches it.
func (c *Core) NextPunctuation() (due time.Time, ok bool) {
	for _, ot := range c.tasks.list {
		if ot.punct == nil {
			continue
		}
		if d, has := ot.punct.NextWallClock(); has && (!ok || d.Before(due)) {
			due, ok = d, true
		}
	}
	return due, ok
}

// Punctuate runs, inside the open batch, the wall-clock punctuators of
// every open task that are due at now, a time of the loop's injected
// clock (the core reads none). Each task's outputs go to produce through
// the lane its partition picks, after the outputs of its records, so
// they reach the producer in the order the task emitted them. A task
// that fails under the fail error policy stops the punctuation with a
// *PunctuationError, and the batch must then not commit.
//
// It must be called between Begin and Finish, and not concurrently with
// Process.
func (c *Core) Punctuate(now time.Time) error {
	if !c.lanes.open {
		panic("batch: Punctuate without Begin")
	}
	for _, ot := range c.tasks.list {
		if ot.punct == nil {
			continue
		}
		if due, ok := ot.punct.NextWallClock(); !ok || now.Before(due) {
			continue
		}
		l := &c.lanes.lanes[int(ot.id.Partition)%len(c.lanes.lanes)]
		before := ot.punct.Stats()
		var err error
		l.out, err = ot.punct.Punctuate(now, l.out[:0])
		for _, o := range l.out {
			l.emit(o)
		}
		after := ot.punct.Stats()
		after.Sub(before)
		l.stats.Add(after)
		if err != nil {
			return &PunctuationError{Task: ot.id, Err: err}
		}
	}
	return nil
}

// PunctuationError is a wall-clock punctuator's failure in its task,
// under the topology's fail error policy.
type PunctuationError struct {
	Task topology.TaskID
	Err  error
}

func (e *PunctuationError) Error() string {
	return fmt.Sprintf("task %s: wall-clock punctuation: %v", name(e.Task), e.Err)
}

// Unwrap returns the task's error.
func (e *PunctuationError) Unwrap() error { return e.Err }
