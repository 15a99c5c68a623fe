package window

import (
	"errors"
	"time"
)

// Join is the window of a stream-stream join (Kafka Streams' JoinWindows):
// a record of the left stream at ts joins the right stream's records of
// the same key whose timestamps are in [ts-Before, ts+After], both bounds
// included; seen from the right stream, a record at ts joins the left
// records in [ts-After, ts+Before]. Both durations may be zero (only equal
// timestamps join).
//
// # Closing and grace
//
// A left record's join window closes once stream time passes ts+After+
// Grace (a right record's: ts+Before+Grace). A pair joins only while both
// records' windows are open, so a window that has closed gets no match any
// more: a left or outer join then emits the record without a match, once,
// and the record arriving after its own window closed is late (dropped and
// counted). Grace is how long out-of-order records still count.
type Join struct {
	Before, After time.Duration
	Grace         time.Duration
}

// JoinWithin returns the symmetric join window of records at most d apart
// (Before = After = d), with grace.
func JoinWithin(d, grace time.Duration) Join {
	return Join{Before: d, After: d, Grace: grace}
}

// Validate reports what is wrong with the window, or nil: every duration
// must be a non-negative whole number of milliseconds.
func (j Join) Validate() error {
	return errors.Join(notNegative("join window before", j.Before), notNegative("join window after", j.After), notNegative("grace", j.Grace),
		whole("join window before", j.Before), whole("join window after", j.After), whole("grace", j.Grace))
}

// LeftClosesAt returns when the join window of a left record at ts closes:
// once stream time is after it (ts + After + Grace), the record gets no
// match any more.
func (j Join) LeftClosesAt(ts time.Time) time.Time { return ts.Add(j.After + j.Grace) }

// RightClosesAt returns when the join window of a right record at ts
// closes: ts + Before + Grace.
func (j Join) RightClosesAt(ts time.Time) time.Time { return ts.Add(j.Before + j.Grace) }
