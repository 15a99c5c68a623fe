// Package window assigns records to event-time windows. Window boundaries
// are a function of the record timestamp alone (aligned to the Unix
// epoch), so every replay assigns a record to the same windows
// (DESIGN.md invariant 7). A window is half-open: its start is inside it,
// its end is not.
//
// Four kinds, as in Kafka Streams:
//
//	Tumbling{Size}              fixed, non-overlapping: each record is in one
//	Hopping{Size, Advance}      fixed, overlapping: each record is in Size/Advance
//	Sliding{Difference}         one per record, [ts-Difference, ts]: records
//	                            within Difference of each other share one
//	Session{Gap}                per key, grown by each record within Gap of
//	                            the last; two sessions merge when a record
//	                            bridges them
//
// Each has a Grace: how long after its end a window still accepts records
// that arrive out of order. Stream time (the largest timestamp a task has
// seen) decides: a window closes once stream time reaches its end plus the
// grace; a record for a closed window is late, dropped and counted.
//
// Join (join.go) is the window of a stream-stream join: how far apart two
// records' timestamps may be, before and after, with a grace.
package window

import (
	"errors"
	"fmt"
	"time"
)

// Window is a half-open event-time interval [Start, End).
type Window struct {
	Start, End time.Time
}

// Contains reports whether ts falls in the window.
func (w Window) Contains(ts time.Time) bool {
	return !ts.Before(w.Start) && ts.Before(w.End)
}

func (w Window) String() string {
	return fmt.Sprintf("[%s, %s)", w.Start.UTC().Format(time.RFC3339Nano), w.End.UTC().Format(time.RFC3339Nano))
}

// Spec is a window kind with its parameters: Tumbling, Hopping, Sliding or
// Session.
type Spec interface {
	// Validate reports what is wrong with the parameters, or nil.
	Validate() error
	// GracePeriod returns how long after a window's end it still accepts
	// records.
	GracePeriod() time.Duration
	// MaxSize returns the longest a window of the kind lasts: the size,
	// the difference, or, for sessions, 0 (a session grows without
	// bound).
	MaxSize() time.Duration
	spec()
}

// ClosesAt returns when a window of spec s closes: its end plus the grace.
// A record whose windows have all closed when it arrives is late.
func ClosesAt(s Spec, w Window) time.Time { return w.End.Add(s.GracePeriod()) }

// Tumbling are fixed-size, non-overlapping windows: each timestamp is in
// exactly one.
type Tumbling struct {
	Size  time.Duration
	Grace time.Duration
}

// For returns the window containing ts. Size must be positive.
func (t Tumbling) For(ts time.Time) Window {
	start := floor(ts, t.Size)
	return Window{Start: start, End: start.Add(t.Size)}
}

// Validate implements Spec.
func (t Tumbling) Validate() error {
	return errors.Join(positive("tumbling window size", t.Size), notNegative("grace", t.Grace), whole("tumbling window size", t.Size))
}

// GracePeriod implements Spec.
func (t Tumbling) GracePeriod() time.Duration { return t.Grace }

// MaxSize implements Spec.
func (t Tumbling) MaxSize() time.Duration { return t.Size }

func (Tumbling) spec() {}

// Hopping are fixed-size windows starting every Advance: a timestamp is in
// Size/Advance of them (rounded up). Advance must be positive and at most
// Size.
type Hopping struct {
	Size, Advance time.Duration
	Grace         time.Duration
}

// For returns the windows containing ts, earliest first.
func (h Hopping) For(ts time.Time) []Window { return h.AppendFor(nil, ts) }

// AppendFor appends the windows containing ts, earliest first, to dst.
func (h Hopping) AppendFor(dst []Window, ts time.Time) []Window {
	last := floor(ts, h.Advance)
	for start := last.Add(-h.Size + h.Advance); !start.After(last); start = start.Add(h.Advance) {
		if w := (Window{Start: start, End: start.Add(h.Size)}); w.Contains(ts) {
			dst = append(dst, w)
		}
	}
	return dst
}

// Validate implements Spec.
func (h Hopping) Validate() error {
	err := errors.Join(positive("hopping window size", h.Size), positive("hopping window advance", h.Advance),
		notNegative("grace", h.Grace), whole("hopping window size", h.Size), whole("hopping window advance", h.Advance))
	if err == nil && h.Advance > h.Size {
		err = fmt.Errorf("window: hopping window advance %v is larger than its size %v: records between windows would be in none", h.Advance, h.Size)
	}
	return err
}

// GracePeriod implements Spec.
func (h Hopping) GracePeriod() time.Duration { return h.Grace }

// MaxSize implements Spec.
func (h Hopping) MaxSize() time.Duration { return h.Size }

func (Hopping) spec() {}

// Sliding are the windows of Kafka Streams' SlidingWindows: two records
// fall into a common window when their timestamps differ by at most
// Difference. A record at ts defines the window that ends with it,
// [ts-Difference, ts] (ts included: as a half-open Window, [ts-Difference,
// ts+1ms)), and the aggregation keeps one window for every distinct set of
// records that close together.
type Sliding struct {
	Difference time.Duration
	Grace      time.Duration
}

// Ending returns the window that ends with a record at ts.
func (s Sliding) Ending(ts time.Time) Window {
	return Window{Start: ts.Add(-s.Difference), End: ts.Add(time.Millisecond)}
}

// Validate implements Spec.
func (s Sliding) Validate() error {
	return errors.Join(positive("sliding window difference", s.Difference), notNegative("grace", s.Grace), whole("sliding window difference", s.Difference))
}

// GracePeriod implements Spec.
func (s Sliding) GracePeriod() time.Duration { return s.Grace }

// MaxSize implements Spec.
func (s Sliding) MaxSize() time.Duration { return s.Difference + time.Millisecond }

func (Sliding) spec() {}

// Session windows group a key's records that follow each other within Gap:
// a session spans from its first record to its last ([first, last+1ms) as
// a half-open Window), and a record within Gap of a session extends it,
// merging the sessions it bridges. A session can grow while a record
// within Gap after it may still come, so it closes at its end plus Gap
// plus Grace, not at ClosesAt (stream.SessionWindowedBy aggregates them).
type Session struct {
	Gap   time.Duration
	Grace time.Duration
}

// Joins reports whether a record at ts belongs to session w: it falls
// within Gap of the session's first or last record.
func (s Session) Joins(w Window, ts time.Time) bool {
	last := w.End.Add(-time.Millisecond)
	return !ts.Before(w.Start.Add(-s.Gap)) && !ts.After(last.Add(s.Gap))
}

// Validate implements Spec.
func (s Session) Validate() error {
	return errors.Join(positive("session gap", s.Gap), notNegative("grace", s.Grace), whole("session gap", s.Gap))
}

// GracePeriod implements Spec.
func (s Session) GracePeriod() time.Duration { return s.Grace }

// MaxSize implements Spec: a session has no upper bound.
func (Session) MaxSize() time.Duration { return 0 }

func (Session) spec() {}

// floor rounds ts down to a multiple of d since the Unix epoch, also for
// times before it.
func floor(ts time.Time, d time.Duration) time.Time {
	ns := ts.UnixNano()
	r := ns % int64(d)
	if r < 0 {
		r += int64(d)
	}
	return time.Unix(0, ns-r).In(ts.Location())
}

func positive(what string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("window: %s must be positive, not %v", what, d)
	}
	return nil
}

func notNegative(what string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("window: %s must not be negative, not %v", what, d)
	}
	return nil
}

// whole requires a duration of whole milliseconds: Kafka timestamps have
// millisecond precision.
func whole(what string, d time.Duration) error {
	if d%time.Millisecond != 0 {
		return fmt.Errorf("window: %s %v is not a whole number of milliseconds (Kafka timestamps are milliseconds)", what, d)
	}
	return nil
}

// Keyed is a windowed aggregation's key: the record key and the window.
type Keyed[K any] struct {
	Key    K
	Window Window
}
