// Package child runs workers as child processes, for tests, benchmarks and
// the chaos harness that must SIGKILL, SIGSTOP and restart real processes:
// it starts a command, keeps every line it writes with its arrival time,
// and waits on what it wrote or on its exit with a deadline, never with a
// sleep.
//
//	p, err := child.Start(child.Self("SLUICE_WORKER=1"), child.Options{Name: "w1"})
//	at, err := p.Lines.Wait(ctx, start, p.Exited(), "transaction committed")
//	p.Signal(syscall.SIGSTOP)
//	p.Kill()
//
// A Process is safe for concurrent use.
package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Options configure a started process.
type Options struct {
	// Name names the process in errors.
	Name string
	// Stderr receives the process's standard error; nil: it joins
	// standard output in Lines (one writer, so a race report or a
	// goroutine dump stays in order with the logs).
	Stderr io.Writer
	// OnLine, if set, is called for every line of standard output as it
	// arrives (on one goroutine, in order), after it is added to Lines.
	OnLine func(Line)
}

// Process is a started child process.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	Started time.Time // just before the exec
	// Lines holds what the process wrote to standard output (and to
	// standard error unless Options.Stderr).
	Lines *Lines

	exited chan struct{} // closed once the process was reaped
	err    error         // Wait's, once exited is closed
}

// Self returns a command that runs the current executable again with env
// added to the environment: a test binary or a program that doubles as a
// worker when a variable of env is set.
func Self(env ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// Start starts cmd, whose Stdout and Stderr it sets.
func Start(cmd *exec.Cmd, o Options) (*Process, error) {
	p := &Process{Name: o.Name, Cmd: cmd, Lines: NewLines(), exited: make(chan struct{})}
	p.Lines.onLine = o.OnLine
	cmd.Stdout = p.Lines
	cmd.Stderr = p.Lines
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("child: starting %s: %w", o.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Exited returns a channel closed once the process has exited and its
// output was read.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// HasExited reports whether the process has exited.
func (p *Process) HasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Err returns how the process ended (exec.Cmd.Wait's error; nil for exit
// status 0), or nil while it runs.
func (p *Process) Err() error {
	if !p.HasExited() {
		return nil
	}
	return p.err
}

// State returns the process's exit state, or nil while it runs.
func (p *Process) State() *os.ProcessState {
	if !p.HasExited() {
		return nil
	}
	return p.Cmd.ProcessState
}

// Alive returns nil while the process runs, and an error that says how it
// ended otherwise.
func (p *Process) Alive() error {
	if !p.HasExited() {
		return nil
	}
	return fmt.Errorf("child: %s exited: %v", p.Name, p.Cmd.ProcessState)
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("child: %s: signal %v: %w", p.Name, sig, err)
	}
	return nil
}

// Kill SIGKILLs the process and returns once it is gone.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Killed reports whether the process exited through SIGKILL.
func (p *Process) Killed() bool {
	if !p.HasExited() {
		return false
	}
	ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// WaitExit waits until the process exits or ctx is done.
func (p *Process) WaitExit(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("child: %s still running: %w", p.Name, ctx.Err())
	}
}

// ErrKilled is Stop's error when the process did not stop in time.
var ErrKilled = errors.New("child: did not stop in time; killed")

// Stop sends SIGTERM and waits up to timeout for the process to exit,
// then kills it (ErrKilled). It returns how the process ended otherwise.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return p.err
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%s: %w (after %v)", p.Name, ErrKilled, timeout)
	}
}

// Quit sends SIGQUIT to a process that hangs and returns what it wrote
// from then on (a Go program's goroutine dump), waiting up to timeout for
// it to exit.
func (p *Process) Quit(timeout time.Duration) string {
	at := time.Now()
	if p.Cmd.Process.Signal(syscall.SIGQUIT) != nil {
		return ""
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
	return p.Lines.Since(at)
}

// WaitStopped waits until every thread of the process is stopped, or ctx
// is done. kill(2) returns before a SIGSTOP has stopped them all, and a
// thread still running for a few milliseconds can, for one, end a
// transaction. It polls /proc/PID/task/TID/stat (state T, or t when
// traced) every millisecond.
func (p *Process) WaitStopped(ctx context.Context) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		running := p.runningThread()
		if running == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("child: %s not stopped: %s: %w", p.Name, running, ctx.Err())
		case <-tick.C:
		}
	}
}

// runningThread describes a thread of the process that is not stopped,
// or returns "" when all are.
func (p *Process) runningThread() string {
	dir := fmt.Sprintf("/proc/%d/task", p.Pid())
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // the thread exited
		case err != nil:
			return err.Error()
		}
		// "TID (COMM) STATE ...", where COMM may hold spaces and ")".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return fmt.Sprintf("thread %s: unreadable stat %q", task.Name(), stat)
		}
		if state := stat[i+2]; state != 'T' && state != 't' {
			return fmt.Sprintf("thread %s in state %c", task.Name(), state)
		}
	}
	return ""
}
