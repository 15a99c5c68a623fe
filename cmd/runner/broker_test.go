package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runnerBin is the runner binary TestMain builds once for every test.
var runnerBin string

// TestMain builds the runner binary with the go command on PATH, which
// inherits GOTOOLCHAIN and the rest of the environment, so the binary is
// built by the same toolchain as the test.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runner-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "runner test:", err)
		os.Exit(1)
	}
	runnerBin = filepath.Join(dir, "runner")
	build := exec.Command("go", "build", "-o", runnerBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "runner test: go build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Deadlines are generous: the suite must pass on a loaded 2-core machine
// with -race. Nothing waits for a fixed time; these only bound the waits.
const (
	startTimeout = 60 * time.Second
	exitTimeout  = 60 * time.Second
	testTimeout  = 3 * time.Minute
)

// runnerEnv returns the environment without any SLUICE_ variable from the
// caller, plus extra, so a developer's own settings cannot leak into a test.
func runnerEnv(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SLUICE_")
	})
	return append(env, extra...)
}

// runnerProc is a runner process under test.
type runnerProc struct {
	cmd        *exec.Cmd
	lines      chan string   // stdout, line by line; closed at EOF
	exited     chan struct{} // closed once the process has been waited for
	waitErr    error         // valid after exited is closed
	stderrPath string
}

// startRunner starts runner with args and extra environment variables. The
// process is killed at the end of the test if it is still running.
func startRunner(t *testing.T, env []string, args ...string) *runnerProc {
	t.Helper()
	stderrPath := filepath.Join(t.TempDir(), "stderr")
	stderr, err := os.Create(stderrPath)
	require.NoError(t, err)
	defer stderr.Close()

	cmd := exec.Command(runnerBin, args...)
	cmd.Env = runnerEnv(env...)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	p := &runnerProc{
		cmd:        cmd,
		lines:      make(chan string, 16),
		exited:     make(chan struct{}),
		stderrPath: stderrPath,
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		// Wait only after the pipe is drained, as os/exec requires.
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// stderr returns what the process wrote to stderr so far, for messages.
func (p *runnerProc) stderr() string {
	b, _ := os.ReadFile(p.stderrPath)
	return string(b)
}

// waitListening waits for the "broker listening on ADDR" line and returns
// ADDR.
func (p *runnerProc) waitListening(t *testing.T) string {
	t.Helper()
	const prefix = "broker listening on "
	deadline := time.After(startTimeout)
	for {
		select {
		case line, ok := <-p.lines:
			require.True(t, ok, "runner exited before listening; stderr:\n%s", p.stderr())
			if addr, found := strings.CutPrefix(line, prefix); found {
				return addr
			}
		case <-deadline:
			require.FailNow(t, "runner did not print its listening line", "within %v; stderr:\n%s", startTimeout, p.stderr())
		}
	}
}

// signal sends sig and waits for the process to exit, returning its exit
// code (-1 when a signal killed it).
func (p *runnerProc) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	return p.wait(t)
}

// wait waits for the process to exit and returns its exit code.
func (p *runnerProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(exitTimeout):
		require.FailNow(t, "runner did not exit", "within %v; stderr:\n%s", exitTimeout, p.stderr())
	}
	var exitErr *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &exitErr) {
		require.NoError(t, p.waitErr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// newClient returns a kgo client of the broker at addr, closed at the end
// of the test.
func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// newAdmin returns a kadm client of the broker at addr, closed at the end
// of the test.
func newAdmin(t *testing.T, addr string) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, addr))
}

// readCommitted reads topic from the start with isolation read_committed
// until every one of its partitions has delivered a record valued
// sentinel, and returns the values of all other records. Records are read
// in offset order per partition, so a sentinel produced last proves that
// the partition has delivered everything committed before it.
func readCommitted(ctx context.Context, t *testing.T, addr, topic string, partitions int, sentinel string) []string {
	t.Helper()
	cl := newClient(t, addr,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	var values []string
	ended := map[int32]bool{}
	for len(ended) < partitions {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "reading %s: %d partitions of %d ended after %d records", topic, len(ended), partitions, len(values))
		fetches.EachError(func(topic string, p int32, err error) {
			require.NoError(t, err, "fetching %s/%d", topic, p)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == sentinel {
				ended[r.Partition] = true
				return
			}
			values = append(values, string(r.Value))
		})
	}
	cl.Close()
	return values
}

// numbered returns the values "000" to n-1, zero-padded to three digits.
func numbered(n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("%03d", i)
	}
	return vs
}

// TestBrokerSurvivesKill is the exactly-once crash test of --data-dir:
// committed transactional records and transactional group offsets survive
// kill -9, and a transaction open at the kill is aborted.
func TestBrokerSurvivesKill(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	dataDir := t.TempDir()
	const (
		partitions = 3
		records    = 100
		sentinel   = "end"
	)

	b := startRunner(t, nil, "broker", "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	addr := b.waitListening(t)
	created, err := newAdmin(t, addr).CreateTopics(ctx, partitions, 1, nil, "in", "out")
	require.NoError(t, err)
	require.NoError(t, created.Error())

	// 100 records in ten committed transactions.
	producer := newClient(t, addr,
		kgo.TransactionalID("test-producer"),
		kgo.DefaultProduceTopic("in"),
	)
	for _, batch := range slices.Collect(slices.Chunk(numbered(records), 10)) {
		require.NoError(t, producer.BeginTransaction())
		var rs []*kgo.Record
		for _, v := range batch {
			rs = append(rs, &kgo.Record{Key: []byte(v), Value: []byte(v)})
		}
		require.NoError(t, producer.ProduceSync(ctx, rs...).FirstErr())
		require.NoError(t, producer.EndTransaction(ctx, kgo.TryCommit))
	}

	// Copy in to out with the consumer group's offsets committed in the
	// same transactions, as a sluice worker does.
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(addr),
		kgo.TransactionalID("test-copier"),
		kgo.ConsumerGroup("copier"),
		kgo.ConsumeTopics("in"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DefaultProduceTopic("out"),
	)
	require.NoError(t, err)
	for copied := 0; copied < records; {
		fetches := sess.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "copying: %d of %d records copied", copied, records)
		fetches.EachError(func(topic string, p int32, err error) {
			require.NoError(t, err, "fetching %s/%d", topic, p)
		})
		var rs []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) {
			rs = append(rs, &kgo.Record{Key: r.Key, Value: r.Value})
		})
		if len(rs) == 0 {
			continue
		}
		require.NoError(t, sess.Begin())
		require.NoError(t, sess.ProduceSync(ctx, rs...).FirstErr())
		committed, err := sess.End(ctx, kgo.TryCommit)
		require.NoError(t, err)
		if committed { // else a rebalance aborted it and the records come again
			copied += len(rs)
		}
	}
	sess.Close()

	offsets, err := newAdmin(t, addr).FetchOffsets(ctx, "copier")
	require.NoError(t, err)
	require.NoError(t, offsets.Error())
	before := offsets.Offsets()
	var sum int64
	before.Each(func(o kadm.Offset) { sum += o.At })
	require.GreaterOrEqual(t, sum, int64(records), "committed offsets %v do not cover the copied records", before)

	// Leave a transaction open; its records are written, but the crash
	// must abort them.
	require.NoError(t, producer.BeginTransaction())
	require.NoError(t, producer.ProduceSync(ctx,
		&kgo.Record{Value: []byte("open-1")},
		&kgo.Record{Value: []byte("open-2")},
	).FirstErr())

	require.Equal(t, -1, b.signal(t, syscall.SIGKILL))

	b = startRunner(t, nil, "broker", "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	addr = b.waitListening(t)

	// The crashed producer's transactional id comes back, as a restarted
	// worker's does, and ends each partition with a sentinel.
	restarted := newClient(t, addr,
		kgo.TransactionalID("test-producer"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	require.NoError(t, restarted.BeginTransaction())
	var ends []*kgo.Record
	for _, topic := range []string{"in", "out"} {
		for p := range int32(partitions) {
			ends = append(ends, &kgo.Record{Topic: topic, Partition: p, Value: []byte(sentinel)})
		}
	}
	require.NoError(t, restarted.ProduceSync(ctx, ends...).FirstErr())
	require.NoError(t, restarted.EndTransaction(ctx, kgo.TryCommit))

	verify := func(after string) {
		t.Helper()
		offsets, err := newAdmin(t, addr).FetchOffsets(ctx, "copier")
		require.NoError(t, err)
		require.NoError(t, offsets.Error())
		require.Equal(t, before, offsets.Offsets(), "group offsets %s", after)
		for _, topic := range []string{"in", "out"} {
			got := readCommitted(ctx, t, addr, topic, partitions, sentinel)
			slices.Sort(got)
			require.Equal(t, numbered(records), got, "read_committed %s %s", topic, after)
		}
	}
	verify("after kill -9")

	// A second crash must load the markers the first restart wrote and
	// write no more.
	require.Equal(t, -1, b.signal(t, syscall.SIGKILL))
	b = startRunner(t, nil, "broker", "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	addr = b.waitListening(t)
	verify("after a second kill -9")

	require.Equal(t, 0, b.signal(t, syscall.SIGTERM), "stderr:\n%s", b.stderr())
}

// TestBrokerSIGTERM checks that SIGTERM stops the broker promptly with exit
// code 0, and that a transaction open at that clean stop stays open across
// the restart: its producer commits it afterwards.
func TestBrokerSIGTERM(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	dataDir := t.TempDir()

	b := startRunner(t, nil, "broker", "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	addr := b.waitListening(t)
	created, err := newAdmin(t, addr).CreateTopics(ctx, 1, 1, nil, "t")
	require.NoError(t, err)
	require.NoError(t, created.Error())
	producer := newClient(t, addr, kgo.TransactionalID("test-sigterm"), kgo.DefaultProduceTopic("t"))
	require.NoError(t, producer.BeginTransaction())
	var rs []*kgo.Record
	for _, v := range numbered(10) {
		rs = append(rs, &kgo.Record{Value: []byte(v)})
	}
	require.NoError(t, producer.ProduceSync(ctx, rs...).FirstErr())

	start := time.Now()
	require.Equal(t, 0, b.signal(t, syscall.SIGTERM), "stderr:\n%s", b.stderr())
	t.Logf("SIGTERM to exit: %v", time.Since(start))

	// Same address, so the producer finds the broker again.
	b = startRunner(t, nil, "broker", "--addr", addr, "--data-dir", dataDir)
	require.Equal(t, addr, b.waitListening(t))
	require.NoError(t, producer.EndTransaction(ctx, kgo.TryCommit))
	require.NoError(t, newClient(t, addr).ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("end")}).FirstErr())
	require.Equal(t, numbered(10), readCommitted(ctx, t, addr, "t", 1, "end"))
	require.Equal(t, 0, b.signal(t, syscall.SIGINT), "stderr:\n%s", b.stderr())
}

// TestUsage checks exit codes and output of the command line itself.
func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		env        []string
		code       int
		stdoutHas  string
		stderrHas  string
		stdoutIs   string
		stdoutNone bool
	}{
		{name: "no command", args: nil, code: 2, stderrHas: "missing command", stdoutNone: true},
		{name: "unknown command", args: []string{"nope"}, code: 2, stderrHas: `unknown command "nope"`, stdoutNone: true},
		{name: "bad flag", args: []string{"broker", "--nope"}, code: 2, stderrHas: "-nope", stdoutNone: true},
		{name: "bad flag value", args: []string{"broker", "--sync=maybe"}, code: 2, stderrHas: "maybe", stdoutNone: true},
		{name: "bad env value", args: []string{"broker"}, env: []string{"SLUICE_SYNC=maybe"}, code: 2, stderrHas: "SLUICE_SYNC", stdoutNone: true},
		{name: "bad addr", args: []string{"broker", "--addr", "nowhere"}, code: 2, stderrHas: "--addr", stdoutNone: true},
		{name: "extra argument", args: []string{"broker", "extra"}, code: 2, stderrHas: "no arguments", stdoutNone: true},
		{name: "help", args: []string{"--help"}, code: 0, stdoutHas: "\n  broker "},
		{name: "help word", args: []string{"help"}, code: 0, stdoutHas: "\n  broker "},
		{name: "help broker", args: []string{"help", "broker"}, code: 0, stdoutIs: brokerUsage},
		{name: "broker help", args: []string{"broker", "--help"}, code: 0, stdoutIs: brokerUsage},
		{name: "help unknown", args: []string{"help", "nope"}, code: 2, stderrHas: "unknown command", stdoutNone: true},
		{name: "describe app help", args: []string{"describe", "dedup", "--help"}, code: 0, stdoutHas: "Flags of runner describe dedup:\n  -id-field string"},
		{name: "run app help", args: []string{"run", "revenue", "--help"}, code: 0, stdoutHas: "  -grace duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), exitTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, runnerBin, tt.args...)
			cmd.Env = runnerEnv(tt.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			require.NoError(t, ctx.Err(), "runner %q did not exit", tt.args)
			var exitErr *exec.ExitError
			if err != nil {
				require.ErrorAs(t, err, &exitErr)
			}
			require.Equal(t, tt.code, cmd.ProcessState.ExitCode(), "stderr:\n%s", stderr.String())
			require.Contains(t, stdout.String(), tt.stdoutHas)
			require.Contains(t, stderr.String(), tt.stderrHas)
			if tt.stdoutIs != "" {
				require.Equal(t, tt.stdoutIs, stdout.String())
			}
			if tt.stdoutNone {
				require.Empty(t, stdout.String())
			}
		})
	}
}

// TestBrokerUsageMatchesContract checks the broker usage text against the
// runner contract in the shared folder beside the repository, when there.
func TestBrokerUsageMatchesContract(t *testing.T) {
	t.Parallel()
	contract, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "CONTRACT.md"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no shared/CONTRACT.md beside the repository")
	}
	require.NoError(t, err)
	_, entry, found := strings.Cut(string(contract), "\nrunner broker ")
	require.True(t, found, "CONTRACT.md has no runner broker entry")
	entry, _, _ = strings.Cut(entry, "\n\n")
	require.Equal(t, "runner broker "+entry+"\n", brokerUsage)
}

// TestBrokerEnv checks that SLUICE_ADDR sets --addr and that the command
// line wins over it.
func TestBrokerEnv(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	free := ln.Addr().String()
	require.NoError(t, ln.Close())

	b := startRunner(t, []string{"SLUICE_ADDR=" + free}, "broker")
	require.Equal(t, free, b.waitListening(t))
	require.Equal(t, 0, b.signal(t, syscall.SIGTERM), "stderr:\n%s", b.stderr())

	// An unusable env value must not matter when the flag is given.
	b = startRunner(t, []string{"SLUICE_ADDR=nowhere"}, "broker", "--addr", "127.0.0.1:0")
	b.waitListening(t)
	require.Equal(t, 0, b.signal(t, syscall.SIGTERM), "stderr:\n%s", b.stderr())
}

// TestContractCopyIsVerbatim checks that docs/contract.md is the runner
// contract in the shared folder beside the repository, when there, byte
// for byte: outside checks drive the project through it.
func TestContractCopyIsVerbatim(t *testing.T) {
	t.Parallel()
	shared, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "CONTRACT.md"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no shared/CONTRACT.md beside the repository")
	}
	require.NoError(t, err)
	copied, err := os.ReadFile(filepath.Join("..", "..", "docs", "contract.md"))
	require.NoError(t, err)
	require.Equal(t, string(shared), string(copied), "docs/contract.md must be the contract verbatim; document additions elsewhere")
}
