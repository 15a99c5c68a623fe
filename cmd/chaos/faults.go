package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// counts are the faults a run injected, by kind.
type counts struct {
	kills, wipes, corruptions, zombies, rebalances, scalings int
	brokerRestarts, brokerKills, hijacks, unfencedHijacks    int
}

// fault is one kind of fault, with its share of the schedule.
type fault struct {
	name   string
	weight int
	inject func(c *chaos, ctx context.Context) error
}

// faults are the kinds the schedule draws from. A kill restarts the worker
// with the same instance id; a wipe or a corruption happens between the
// kill and the restart.
var faults = []fault{
	{"kill", 56, func(c *chaos, ctx context.Context) error { return c.killWorker(ctx, "") }},
	{"kill+wipe", 8, func(c *chaos, ctx context.Context) error { return c.killWorker(ctx, "wipe") }},
	{"kill+corrupt", 8, func(c *chaos, ctx context.Context) error { return c.killWorker(ctx, "corrupt") }},
	{"zombie", 10, (*chaos).zombie},
	{"scale", 3, (*chaos).scale},
	{"broker-restart", 5, func(c *chaos, ctx context.Context) error { return c.restartBroker(false) }},
	{"broker-kill", 2, func(c *chaos, ctx context.Context) error { return c.restartBroker(true) }},
	{"hijack", 8, (*chaos).hijack},
}

// pick draws a fault.
func pick(rng *rand.Rand, kinds []fault) fault {
	total := 0
	for _, f := range kinds {
		total += f.weight
	}
	n := rng.IntN(total)
	for _, f := range kinds {
		if n < f.weight {
			return f
		}
		n -= f.weight
	}
	return kinds[len(kinds)-1]
}

// randomWorker returns a running, not stopped worker of a random app.
func (c *chaos) randomWorker() *worker {
	a := c.apps[c.rng.IntN(len(c.apps))]
	var ws []*worker
	for _, w := range c.fleet.running(a) {
		if !w.stopped && !w.p.exited() {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	return ws[c.rng.IntN(len(ws))]
}

// killWorker SIGKILLs a random worker and restarts it with the same
// instance id after up to a second; damage "wipe" removes its state
// directory first, "corrupt" truncates or overwrites one of its files.
func (c *chaos) killWorker(ctx context.Context, damage string) error {
	w := c.randomWorker()
	if w == nil {
		return nil
	}
	w.p.kill()
	c.counts.kills++
	switch damage {
	case "wipe":
		if err := os.RemoveAll(w.stateDir); err != nil {
			return err
		}
		c.fleet.setDamaged(w.stateDir, false) // the damage went with it
		c.counts.wipes++
		c.logf("kill %s, state directory wiped", w)
	case "corrupt":
		what, err := c.corrupt(w.stateDir)
		if err != nil {
			return err
		}
		c.counts.corruptions++
		c.fleet.setDamaged(w.stateDir, true)
		c.logf("kill %s, %s", w, what)
	default:
		c.logf("kill %s", w)
	}
	c.pause(ctx, time.Duration(c.rng.Int64N(int64(time.Second))))
	_, err := c.fleet.start(w.app, w.instance)
	return err
}

// corrupt damages one non-empty file of a state directory: truncates it to
// a random shorter length, or overwrites a random stretch of it with
// random bytes. It says what it did.
func (c *chaos) corrupt(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(path, "LOCK") {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Size() > 0 { // an empty marker file has nothing to damage
			files = append(files, path)
		}
		return nil
	})
	if err != nil || len(files) == 0 {
		return "no state file to corrupt", nil
	}
	slices.Sort(files)
	path := files[c.rng.IntN(len(files))]
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	rel, _ := filepath.Rel(dir, path)
	if c.rng.IntN(2) == 0 {
		size := c.rng.Int64N(st.Size())
		return fmt.Sprintf("%s truncated from %d to %d bytes", rel, st.Size(), size), os.Truncate(path, size)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	at := c.rng.Int64N(st.Size())
	garbage := make([]byte, 1+c.rng.IntN(64))
	for i := range garbage {
		garbage[i] = byte(c.rng.Uint32())
	}
	if _, err := f.WriteAt(garbage, at); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %d bytes at %d of %d overwritten", rel, len(garbage), at, st.Size()), nil
}

// zombie SIGSTOPs a random worker past the session timeout (its partitions
// move to the others, and their new transactions fence its producer), then
// SIGCONTs it: it must find itself fenced, drop what it held and rejoin.
func (c *chaos) zombie(ctx context.Context) error {
	w := c.randomWorker()
	if w == nil {
		return nil
	}
	w.stopped = true
	w.p.signal(sigStop)
	c.counts.zombies++
	c.logf("SIGSTOP %s", w)
	c.pause(ctx, c.session+time.Duration(c.rng.Int64N(int64(c.session))))
	w.p.signal(sigCont)
	w.stopped = false
	c.counts.rebalances += 2 // out of the group, and back in
	c.logf("SIGCONT %s", w)
	return nil
}

// scale takes a random app from its workers down to one, up to four, and
// back to one, then to its usual three; each step a graceful stop or a
// start, waiting a few seconds between steps.
func (c *chaos) scale(ctx context.Context) error {
	a := c.apps[c.rng.IntN(len(c.apps))]
	step := func(n int) error {
		ws := c.fleet.running(a)
		for len(ws) > n {
			w := ws[len(ws)-1]
			ws = ws[:len(ws)-1]
			if err := c.fleet.remove(w); err != nil {
				c.logf("scale %s: %v", a.name(), err)
			}
		}
		for i := len(ws); i < n; i++ {
			if _, err := c.fleet.start(a, fmt.Sprintf("w%d", i+1)); err != nil {
				return err
			}
		}
		c.counts.rebalances++
		c.logf("scale %s to %d", a.name(), n)
		c.pause(ctx, 2*time.Second+time.Duration(c.rng.Int64N(int64(3*time.Second))))
		return nil
	}
	for _, n := range []int{1, 4, 1, c.workers} {
		if err := step(n); err != nil {
			return err
		}
	}
	c.counts.scalings++
	return nil
}

// restartBroker restarts the broker gracefully, or after a SIGKILL.
func (c *chaos) restartBroker(kill bool) error {
	if err := c.broker.restart(kill); err != nil {
		return err
	}
	if kill {
		c.counts.brokerKills++
		c.logf("broker SIGKILLed and restarted")
	} else {
		c.counts.brokerRestarts++
		c.logf("broker restarted")
	}
	return nil
}

// hijack starts a second process with a running worker's instance id (and
// a state directory of its own): one of the two must be fenced and exit
// within two session timeouts. The survivor is left running as that
// instance; if both still run, the hijack was not fenced: a violation.
func (c *chaos) hijack(ctx context.Context) error {
	w := c.randomWorker()
	if w == nil {
		return nil
	}
	c.hijacks++
	h, err := c.fleet.spawn(w.app, w.instance, filepath.Join(c.fleet.dir, "hijack", fmt.Sprint(c.hijacks)), w.instance+"-hijack")
	if err != nil {
		return err
	}
	c.counts.hijacks++
	c.counts.rebalances++
	fenced := waitUntil(ctx, 2*c.session+10*time.Second, func() bool { return h.exited() || w.p.exited() })
	switch {
	case !fenced:
		c.counts.unfencedHijacks++
		c.logf("hijack of %s: both processes still run after %v: NOT FENCED", w, 2*c.session+10*time.Second)
		h.kill()
	case h.exited():
		c.logf("hijack of %s: the hijacker exited (%v)", w, h.err)
	default:
		c.logf("hijack of %s: the original exited (%v); the hijacker stopped, the original restarted", w, w.p.err)
		w.p.expected = true
		if err := h.term(time.Minute); err != nil {
			c.logf("hijack of %s: %v", w, err)
		}
		if _, err := c.fleet.start(w.app, w.instance); err != nil {
			return err
		}
	}
	return nil
}

// pause waits d or until ctx ends.
func (c *chaos) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (c *chaos) logf(format string, args ...any) {
	fmt.Fprintf(c.out, "chaos: %6.1fs ", time.Since(c.started).Seconds())
	fmt.Fprintf(c.out, format, args...)
	fmt.Fprintln(c.out)
}
