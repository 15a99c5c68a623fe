// Package window assigns records to event-time windows. Window boundaries
// are a function of the record timestamp alone (aligned to the Unix
// epoch), so every replay assigns a record to the same windows
// (DESIGN.md invariant 7).
package window

import (
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

// Tumbling are fixed-size, non-overlapping windows: each timestamp is in
// exactly one.
type Tumbling struct {
	Size time.Duration
}

// For returns the window containing ts. Size must be positive.
func (t Tumbling) For(ts time.Time) Window {
	start := floor(ts, t.Size)
	return Window{Start: start, End: start.Add(t.Size)}
}

// Hopping are fixed-size windows starting every Advance: a timestamp is in
// Size/Advance of them (rounded up). Advance must be positive and at most
// Size.
type Hopping struct {
	Size, Advance time.Duration
}

// For returns the windows containing ts, earliest first.
func (h Hopping) For(ts time.Time) []Window {
	var ws []Window
	last := floor(ts, h.Advance)
	for start := last.Add(-h.Size + h.Advance); !start.After(last); start = start.Add(h.Advance) {
		if w := (Window{Start: start, End: start.Add(h.Size)}); w.Contains(ts) {
			ws = append(ws, w)
		}
	}
	return ws
}

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
