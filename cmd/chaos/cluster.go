package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process: the broker, a worker, or a hijacker.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
	// expected: the harness killed or stopped it (an exit is not news).
	expected bool
}

// startProc starts bin with args, its standard error (and standard
// output, unless stdout is given) appended to log.
func startProc(name, bin string, args []string, log io.Writer, stdout io.Writer) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = log
	cmd.Stdout = log
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("chaos: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless p has exited.
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill SIGKILLs p and waits until it has exited.
func (p *proc) kill() {
	p.expected = true
	p.signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits for the exit, SIGKILLing p after grace.
func (p *proc) term(grace time.Duration) error {
	p.expected = true
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot stop
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		// A Go process prints every goroutine's stack on SIGQUIT: the
		// log shows where it hung.
		p.signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		p.kill()
		return fmt.Errorf("chaos: %s did not stop within %v of SIGTERM; its goroutines are in its log; killed", p.name, grace)
	}
}

// brokerProc is the `runner broker --data-dir` process, restarted on the
// same address and data directory.
type brokerProc struct {
	bin, dataDir string
	log          io.Writer
	addr         string // fixed by the first start
	p            *proc
}

// start starts the broker and waits for its "broker listening on ADDR"
// line (at most a minute: a restart replays the data directory).
func (b *brokerProc) start() error {
	addr := b.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	pr, pw := io.Pipe()
	p, err := startProc("broker", b.bin, []string{"broker", "--addr", addr, "--data-dir", b.dataDir}, b.log, pw)
	if err != nil {
		return err
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(b.log, line)
			if a, ok := strings.CutPrefix(line, "broker listening on "); ok {
				select {
				case listening <- a:
				default:
				}
			}
		}
	}()
	go func() { <-p.done; pw.Close() }()
	select {
	case a := <-listening:
		b.addr, b.p = a, p
		return nil
	case <-p.done:
		return fmt.Errorf("chaos: the broker exited before listening: %v", p.err)
	case <-time.After(time.Minute):
		p.kill()
		return errors.New("chaos: the broker did not listen within a minute")
	}
}

// restart stops the broker gracefully (kill: with SIGKILL) and starts it
// again on the same address and data directory.
func (b *brokerProc) restart(kill bool) error {
	if kill {
		b.p.kill()
	} else if err := b.p.term(time.Minute); err != nil {
		return err
	}
	return b.start()
}

// worker is one `runner run` worker of an app, under its instance id.
type worker struct {
	app      app
	instance string
	stateDir string
	p        *proc
	stopped  bool   // SIGSTOPped
	log      string // its log file
}

func (w *worker) String() string { return w.app.name() + "/" + w.instance }

// fleet runs the workers of every app.
type fleet struct {
	bin     string
	broker  *brokerProc
	dir     string // state directories and logs under it
	session time.Duration
	logs    *logs

	mu      sync.Mutex
	workers []*worker // every worker that should run, by app and instance
	exits   int       // workers that exited without the harness killing them
	exitLog []string  // what they exited with
	// corruptionExits are exits of damaged workers whose database found
	// the damage while in use (state.CorruptionPanic): the designed way
	// out, the restart restoring in full. Not violations.
	corruptionExits int
	// damaged holds the state directories in which the harness corrupted
	// a file and did not wipe since: an exit because the database found
	// the damage in use is expected there. The damage is the directory's,
	// not one process's: it stays through restarts, and through a scaling
	// that stops the instance and starts it again, until a database
	// reads the damaged block (maybe much later) or the directory is
	// wiped.
	damaged map[string]bool
}

// start starts instance of a (its state directory kept across restarts)
// and adds it to the fleet if it is not there yet.
func (f *fleet) start(a app, instance string) (*worker, error) {
	w := f.find(a, instance)
	if w == nil {
		w = &worker{app: a, instance: instance, stateDir: filepath.Join(f.dir, "state", a.name(), instance)}
	}
	p, err := f.spawn(a, instance, w.stateDir, instance)
	if err != nil {
		return nil, err
	}
	w.log = f.logs.path(a.name() + "-" + instance)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.p, w.stopped = p, false
	if !slices.Contains(f.workers, w) {
		f.workers = append(f.workers, w)
	}
	return w, nil
}

// spawn starts a `runner run` process of a as instance, with its state in
// stateDir, logging to the log called logName.
func (f *fleet) spawn(a app, instance, stateDir, logName string) (*proc, error) {
	args := append([]string{"run"}, a.args()...)
	args = append(args, "--brokers", f.broker.addr, "--instance", instance, "--state-dir", stateDir,
		"--metrics-addr", "", "--session-timeout", f.session.String())
	return startProc(a.name()+"/"+instance, f.bin, args, f.logs.open(a.name()+"-"+logName), nil)
}

func (f *fleet) find(a app, instance string) *worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.workers {
		if w.app == a && w.instance == instance {
			return w
		}
	}
	return nil
}

// running returns a's workers that are in the fleet, in instance order.
func (f *fleet) running(a app) []*worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ws []*worker
	for _, w := range f.workers {
		if w.app == a {
			ws = append(ws, w)
		}
	}
	return ws
}

// remove stops w gracefully and takes it out of the fleet (scaling down).
func (f *fleet) remove(w *worker) error {
	err := w.p.term(time.Minute)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.workers {
		if x == w {
			f.workers = append(f.workers[:i], f.workers[i+1:]...)
			break
		}
	}
	return err
}

// reap restarts every worker of the fleet that exited on its own, and
// counts it: a worker must survive every fault but its own SIGKILL.
func (f *fleet) reap() error {
	f.mu.Lock()
	var dead []*worker
	for _, w := range f.workers {
		if w.p.exited() && !w.p.expected {
			dead = append(dead, w)
			if f.damaged[w.stateDir] && strings.Contains(tail(w.log, 64<<10), corruptionPanic) {
				f.corruptionExits++
				continue
			}
			f.exits++
			f.exitLog = append(f.exitLog, fmt.Sprintf("%s exited: %v", w, w.p.err))
		}
	}
	f.mu.Unlock()
	for _, w := range dead {
		if _, err := f.start(w.app, w.instance); err != nil {
			return err
		}
	}
	return nil
}

// setDamaged records whether the harness left damage in dir.
func (f *fleet) setDamaged(dir string, damaged bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.damaged == nil {
		f.damaged = map[string]bool{}
	}
	f.damaged[dir] = damaged
}

// stopAll stops every worker gracefully.
func (f *fleet) stopAll() {
	f.mu.Lock()
	ws := append([]*worker(nil), f.workers...)
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { _ = w.p.term(time.Minute) })
	}
	wg.Wait()
}

// logs are the run's log files, one per process name, appended to across
// restarts.
type logs struct {
	dir   string
	mu    sync.Mutex
	files map[string]*os.File
}

func (l *logs) open(name string) io.Writer {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.files[name]; f != nil {
		return f
	}
	f, err := os.OpenFile(l.path(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return io.Discard
	}
	if l.files == nil {
		l.files = map[string]*os.File{}
	}
	l.files[name] = f
	return f
}

// path is the file of the log called name.
func (l *logs) path(name string) string {
	return filepath.Join(l.dir, strings.ReplaceAll(name, "/", "-")+".log")
}

// corruptionPanic starts what a worker prints when its database found
// damage while in use (state.CorruptionPanic).
const corruptionPanic = "panic: state: database in "

// tail returns the last n bytes of the file at path ("" if unreadable).
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	b := make([]byte, min(n, st.Size()))
	if _, err := f.ReadAt(b, st.Size()-int64(len(b))); err != nil {
		return ""
	}
	return string(b)
}

func (l *logs) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.files {
		f.Close()
	}
}

// waitUntil polls cond every 100 ms until it holds, ctx ends, or d passes.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
