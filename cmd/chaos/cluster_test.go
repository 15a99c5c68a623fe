package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Damage the harness left in a state directory stays expected through a
// scaling that stops the instance and starts it as a new worker: a
// database may read the damaged block much later. A wipe takes the
// damage with it: an exit on a corruption after it is a violation.
func TestDamageOutlivesTheWorkerThatGotIt(t *testing.T) {
	dir := t.TempDir()
	crash, ready := filepath.Join(dir, "crash"), filepath.Join(dir, "ready")
	// A runner that, while crash exists, exits as one whose database
	// found damage in use, and otherwise runs until stopped (SIGTERM:
	// exit 0, as the runner does).
	bin := filepath.Join(dir, "runner")
	script := "#!/bin/sh\nif [ -e " + crash + " ]; then echo '" + corruptionPanic + "/x is corrupt: checksum mismatch' >&2; exit 2; fi\ntrap 'kill $!; exit 0' TERM\nsleep 600 &\n: > " + ready + "\nwait\n"
	require.NoError(t, os.WriteFile(bin, []byte(script), 0o755))
	f := &fleet{bin: bin, broker: &brokerProc{addr: "127.0.0.1:1"}, dir: dir, session: time.Second, logs: &logs{dir: dir}}
	defer f.stopAll()
	a := newDedup()

	crashOnce := func() *worker {
		t.Helper()
		require.NoError(t, os.WriteFile(crash, nil, 0o644))
		w, err := f.start(a, "w1")
		require.NoError(t, err)
		select {
		case <-w.p.done:
		case <-time.After(time.Minute):
			t.Fatal("the runner did not exit")
		}
		require.NoError(t, os.Remove(crash))
		require.NoError(t, os.RemoveAll(ready))
		require.NoError(t, f.reap()) // restarts it: it runs now
		waitReady(t, ready)
		return w
	}

	w, err := f.start(a, "w1")
	require.NoError(t, err)
	waitReady(t, ready)
	f.setDamaged(w.stateDir, true)  // the harness corrupted a file
	require.NoError(t, f.remove(w)) // a scaling stops the instance
	crashOnce()                     // started again, a new worker
	require.Equal(t, 1, f.corruptionExits, "damage in its directory, found later")
	require.Zero(t, f.exits)

	w = f.find(a, "w1")
	require.NotNil(t, w)
	require.NoError(t, f.remove(w))
	f.setDamaged(w.stateDir, false) // wiped
	crashOnce()
	require.Equal(t, 1, f.corruptionExits)
	require.Equal(t, 1, f.exits, "a corruption with no damage left is a violation")
}

// waitReady waits until the fake runner created ready (it stops on
// SIGTERM from then on), and removes it.
func waitReady(t *testing.T, ready string) {
	t.Helper()
	require.Eventually(t, func() bool { return os.Remove(ready) == nil }, time.Minute, 5*time.Millisecond, "the fake runner did not start")
}
