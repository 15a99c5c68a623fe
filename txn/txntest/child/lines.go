package child

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Line is one line a process wrote, with when it arrived.
type Line struct {
	At   time.Time
	Text string
}

// Lines collects the lines written to it, each with its arrival time. It
// is safe for concurrent use.
type Lines struct {
	mu      sync.Mutex
	lines   []Line
	partial []byte
	changed chan struct{} // closed and replaced on every new line
	onLine  func(Line)
}

// NewLines returns an empty Lines.
func NewLines() *Lines { return &Lines{changed: make(chan struct{})} }

// Write adds every complete line of b.
func (l *Lines) Write(b []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	l.partial = append(l.partial, b...)
	var added []Line
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		ln := Line{At: now, Text: string(l.partial[:i])}
		l.lines = append(l.lines, ln)
		added = append(added, ln)
		l.partial = l.partial[i+1:]
	}
	if len(added) > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	on := l.onLine
	l.mu.Unlock()
	if on != nil {
		for _, ln := range added {
			on(ln)
		}
	}
	return len(b), nil
}

// Find returns the first line at or after since that contains one of subs.
func (l *Lines) Find(since time.Time, subs ...string) (Line, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ln := range l.lines {
		if !ln.At.Before(since) && slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(ln.Text, s) }) {
			return ln, true
		}
	}
	return Line{}, false
}

// Wait is Find, waiting for the line until ctx is done or stop is closed
// (a process's Exited: what it wrote before is still searched). It
// returns the line's arrival time.
func (l *Lines) Wait(ctx context.Context, since time.Time, stop <-chan struct{}, subs ...string) (time.Time, error) {
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if ln, ok := l.Find(since, subs...); ok {
			return ln.At, nil
		}
		select {
		case <-changed:
		case <-stop:
			if ln, ok := l.Find(since, subs...); ok {
				return ln.At, nil
			}
			return time.Time{}, fmt.Errorf("child: no line with any of %q since %v: the process exited", subs, since.Format(time.TimeOnly))
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("child: no line with any of %q since %v: %w", subs, since.Format(time.TimeOnly), ctx.Err())
		}
	}
}

// Since returns the lines that arrived at or after t.
func (l *Lines) Since(t time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ln := range l.lines {
		if !ln.At.Before(t) {
			out = append(out, ln.Text)
		}
	}
	return strings.Join(out, "\n")
}

// Times returns the arrival times of the lines that contain sub.
func (l *Lines) Times(sub string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ts []time.Time
	for _, ln := range l.lines {
		if strings.Contains(ln.Text, sub) {
			ts = append(ts, ln.At)
		}
	}
	return ts
}

// Tail returns the last n lines that keep accepts (nil: every line).
func (l *Lines) Tail(n int, keep func(string) bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for i := len(l.lines) - 1; i >= 0 && len(out) < n; i-- {
		if keep == nil || keep(l.lines[i].Text) {
			out = append(out, l.lines[i].Text)
		}
	}
	slices.Reverse(out)
	return strings.Join(out, "\n")
}

// Save writes every line to path.
func (l *Lines) Save(path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, ln := range l.lines {
		b.WriteString(ln.Text)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// All returns every line so far.
func (l *Lines) All() []Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}
