package txn_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/txn"
	"github.com/stretchr/testify/require"
)

// A second process started with a running worker's instance id (a
// transactional-id hijack): each new session's producer fences the other
// process's, and without a check of the group's members both would go on
// re-creating sessions forever. One of the two must stop with the fatal
// FENCED_INSTANCE_ID error, the other must go on and stop cleanly on
// SIGTERM, and the output must hold every record exactly once.
func TestHijackedInstanceStopsOneOfTheTwo(t *testing.T) {
	busyCPU(t)
	f := newFleet(t, "hijack", txn.ExactlyOnce)
	// The runner's default: heartbeats 3 s apart, longer than the
	// sessions of two processes fencing each other last.
	f.cfg.sessionTimeout = 10 * time.Second
	w1, w2 := f.start("w1", nil), f.start("w2", nil)
	from := f.warmUp(w1, w2)
	// A trickle, as in production between bursts: each session of the
	// two commits a transaction before the other fences it, so the
	// backoff between sessions never grows past the heartbeat interval.
	n := from + 1_500
	feed := startFeeder(t, f.brokers, "in", from, n, 1, 10*time.Millisecond)
	hijacker := f.start("w1", nil)

	// Within two session timeouts: the fenced one learns of the other
	// member at once, not when a heartbeat happens to land between two
	// of its sessions.
	var loser, survivor *proc
	deadline := hijacker.Started.Add(2 * f.cfg.sessionTimeout)
	for loser == nil {
		require.True(t, time.Now().Before(deadline), "both processes with instance id w1 still run after %v", 2*f.cfg.sessionTimeout)
		select {
		case <-w1.Exited():
			loser, survivor = w1, hijacker
		case <-hijacker.Exited():
			loser, survivor = hijacker, w1
		case <-time.After(100 * time.Millisecond):
		}
	}
	require.Equal(t, 1, loser.State().ExitCode(), "%s: %v", loser.Name, loser.State())
	require.Contains(t, loser.Lines.Tail(100, func(string) bool { return true }), "another live worker uses the same instance id")
	t.Logf("the %s process of w1 stopped %.1fs after the hijacker started", map[bool]string{true: "original", false: "hijacking"}[loser == w1], time.Since(hijacker.Started).Seconds())

	feed.wait()
	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	survivor.signal(syscall.SIGTERM)
	st := survivor.waitExit(30 * time.Second)
	require.True(t, st.Success(), "%s: exit after SIGTERM: %v", survivor.Name, st)
	f.stopAll(w2)
}
