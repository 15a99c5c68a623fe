package child_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/txn/txntest/child"
)

// With envChild set the test binary is a child: it writes "ready", then
// waits for SIGTERM (or, with "stubborn", ignores it) and writes "bye".
const envChild = "SLUICE_PROC_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		runChild(mode)
		return
	}
	os.Exit(m.Run())
}

func runChild(mode string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Println("ready")
	fmt.Fprintln(os.Stderr, "on stderr")
	for range term {
		if mode != "stubborn" {
			fmt.Println("bye")
			os.Exit(0)
		}
		fmt.Println("ignoring SIGTERM")
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// A process's lines arrive in order with their times, standard error
// among them; SIGTERM stops it cleanly, and what it wrote before exiting
// can still be waited for.
func TestStartWaitStop(t *testing.T) {
	var seen atomic.Int64
	p, err := child.Start(child.Self(envChild+"=polite"), child.Options{Name: "child", OnLine: func(child.Line) { seen.Add(1) }})
	require.NoError(t, err)
	at, err := p.Lines.Wait(ctx(t), p.Started, p.Exited(), "ready")
	require.NoError(t, err)
	require.False(t, at.Before(p.Started))
	_, err = p.Lines.Wait(ctx(t), p.Started, p.Exited(), "on stderr")
	require.NoError(t, err)
	require.NoError(t, p.Alive())

	require.NoError(t, p.Stop(20*time.Second))
	require.True(t, p.HasExited())
	require.False(t, p.Killed())
	_, err = p.Lines.Wait(ctx(t), at, p.Exited(), "bye")
	require.NoError(t, err, "written before the exit")
	require.Error(t, p.Alive())
	require.Equal(t, int64(3), seen.Load())
	require.Equal(t, "ready\non stderr\nbye", p.Lines.Tail(10, nil))
}

// A line that never comes fails the wait at the deadline, or at once when
// the process exits; a process that ignores SIGTERM is killed by Stop.
func TestWaitFailsAndStopKills(t *testing.T) {
	p, err := child.Start(child.Self(envChild+"=stubborn"), child.Options{Name: "stubborn", Stderr: os.Stderr})
	require.NoError(t, err)
	_, err = p.Lines.Wait(ctx(t), p.Started, p.Exited(), "ready")
	require.NoError(t, err)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = p.Lines.Wait(short, p.Started, p.Exited(), "never")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	err = p.Stop(200 * time.Millisecond)
	require.ErrorIs(t, err, child.ErrKilled)
	require.True(t, p.Killed())
	_, err = p.Lines.Wait(ctx(t), p.Started, p.Exited(), "never")
	require.ErrorContains(t, err, "the process exited")
}

// WaitStopped returns once SIGSTOP has stopped every thread, and a
// stopped process still stops cleanly after SIGCONT.
func TestWaitStopped(t *testing.T) {
	p, err := child.Start(child.Self(envChild+"=polite"), child.Options{Name: "child"})
	require.NoError(t, err)
	_, err = p.Lines.Wait(ctx(t), p.Started, p.Exited(), "ready")
	require.NoError(t, err)
	require.NoError(t, p.Signal(syscall.SIGSTOP))
	require.NoError(t, p.WaitStopped(ctx(t)))
	require.NoError(t, p.Signal(syscall.SIGCONT))
	require.NoError(t, p.Stop(20*time.Second))
}
