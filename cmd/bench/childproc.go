package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/txn/txntest/child"
)

// childProc is a worker process seen from the bench: what it reported on
// standard output, parsed into its state.
type childProc struct {
	*child.Process

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event
	st      childState
}

// childState is what the process reported.
type childState struct {
	started     time.Time // entered main
	firstFetch  time.Time
	firstCommit time.Time
	firstTxn    int64 // records of the first committed transaction
	commits     int64
	committed   int64 // input records of committed transactions
	restored    []restoredTask
	early       []string // log messages and responses before the first commit
	mem         memSample
	memPeak     memSample // the report with the largest RSS
	// commitsAt, revokes and rebalanceAborts are when the process
	// committed, had partitions revoked, and had a transaction aborted
	// by a rebalance (the rebalance benchmark).
	commitsAt       []time.Time
	revokes         []time.Time
	rebalanceAborts []time.Time
}

// startChild starts a worker process; its stderr goes to stderr, each
// line prefixed with the label.
func startChild(cfg childConfig, extraEnv []string, label string, stderr io.Writer) (*childProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the bench's own executable: %w", err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(childEnviron(), extraEnv...), childEnv+"="+string(raw))
	c := &childProc{changed: make(chan struct{})}
	c.Process, err = child.Start(cmd, child.Options{
		Name:   "worker " + label,
		Stderr: &prefixWriter{w: stderr, prefix: "worker " + label + ": "},
		OnLine: func(l child.Line) { c.event(l.Text) },
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// childEnviron is the bench's environment without the GODEBUG setting
// keepMemoryMapped adds: the worker returns memory to the OS as any Go
// program does by default, so that its RSS is a worker's.
func childEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			var keep []string
			for _, s := range strings.Split(v, ",") {
				if s != "madvdontneed=0" && s != "" {
					keep = append(keep, s)
				}
			}
			if len(keep) > 0 {
				env = append(env, "GODEBUG="+strings.Join(keep, ","))
			}
			continue
		}
		if !strings.HasPrefix(kv, childEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *childProc) event(line string) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return
	}
	at := time.Unix(0, ns)
	kv := map[string]string{}
	for _, s := range f[2:] {
		if k, v, ok := strings.Cut(s, "="); ok {
			kv[k] = v
		}
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(kv[k], 10, 64); return n }
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &c.st
	since := func() string { return at.Sub(c.Started).Round(time.Millisecond).String() }
	switch f[0] {
	case "start":
		st.started = at
	case "fetch":
		if st.firstFetch.IsZero() {
			st.firstFetch = at
			st.early = append(st.early, since()+" first fetch")
		}
	case "commit":
		if st.firstCommit.IsZero() {
			st.firstCommit, st.firstTxn = at, num("records")
			st.early = append(st.early, since()+" first commit")
		}
		st.commits++
		st.committed += num("records")
		st.commitsAt = append(st.commitsAt, at)
	case "restored":
		st.restored = append(st.restored, restoredTask{at: at, task: kv["task"], records: num("records"), took: time.Duration(num("took_ns"))})
		if st.firstCommit.IsZero() {
			st.early = append(st.early, fmt.Sprintf("%s task %s restored %d records in %v", since(), kv["task"], num("records"), time.Duration(num("took_ns")).Round(time.Millisecond)))
		}
	case "log":
		msg, _ := strconv.Unquote(strings.SplitN(line, "msg=", 2)[1])
		switch {
		case strings.Contains(msg, revokeLog):
			st.revokes = append(st.revokes, at)
		case strings.HasPrefix(msg, "transaction aborted by a rebalance"):
			st.rebalanceAborts = append(st.rebalanceAborts, at)
		}
		if st.firstCommit.IsZero() {
			st.early = append(st.early, since()+" log: "+msg)
		}
	case "rpc":
		if st.firstCommit.IsZero() {
			s := since() + " " + kv["name"]
			if e, ok := kv["err"]; ok {
				s += " err " + e
			}
			st.early = append(st.early, s)
		}
	case "mem":
		m := memSample{at: at, rss: num("rss"), hwm: num("hwm"), goTotal: num("go_total"), goReleased: num("go_released"),
			heapObjects: num("heap_objects"), heapGoal: num("heap_goal")}
		st.mem = m
		if m.rss > st.memPeak.rss {
			st.memPeak = m
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// state returns a copy of what the process reported so far.
func (c *childProc) state() childState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.restored = append([]restoredTask(nil), st.restored...)
	st.early = append([]string(nil), st.early...)
	st.commitsAt = append([]time.Time(nil), st.commitsAt...)
	st.revokes = append([]time.Time(nil), st.revokes...)
	st.rebalanceAborts = append([]time.Time(nil), st.rebalanceAborts...)
	return st
}

// wait waits until cond holds for what the process reported, it exits,
// or ctx is done.
func (c *childProc) wait(ctx context.Context, cond func(*childState) bool) error {
	for {
		c.mu.Lock()
		ok, ch := cond(&c.st), c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-c.Exited():
			c.mu.Lock()
			ok := cond(&c.st)
			c.mu.Unlock()
			if ok {
				return nil
			}
			return c.Alive()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// prefixWriter writes each line with a prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
