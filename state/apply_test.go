package state_test

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/stretchr/testify/require"
)

func cp(off int64) state.Checkpoint {
	return state.Checkpoint{Offsets: map[string]int64{"app-s-changelog": off}}
}

// openEach opens a DB that hands every commit to an apply of its own
// (MaxUnapplied 1), for the tests of one apply running in the background.
func openEach(t *testing.T, fs vfs.FS) *state.DB {
	t.Helper()
	return openWith(t, state.Options{FS: fs, MaxUnapplied: 1})
}

// While a commit is applied in the background, reads see its writes, the
// next transaction's writes are pending on top of them, and a Discard
// drops only the latter. The database holds the commit only once applied.
func TestCommitAsyncReadsCommittedWrites(t *testing.T) {
	fs := vfs.NewMem()
	db := openEach(t, fs)
	s := kv(t, db, &changelog{})
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	state.SetApplyHook(db, func() error {
		started <- struct{}{}
		<-release
		return nil
	})

	require.NoError(t, s.Put("a", "1"))
	require.NoError(t, s.Put("b", "1"))
	require.NoError(t, db.CommitAsync(cp(1)))
	<-started
	_, applied, err := db.GetApplied([]byte("\x01sa"))
	require.NoError(t, err)
	require.False(t, applied, "not in the database before the apply")
	require.Equal(t, "1", get(t, s, "a"), "committed writes are read while applied")

	require.NoError(t, s.Put("a", "2"))
	require.NoError(t, s.Delete("b"))
	require.NoError(t, s.Put("c", "2"))
	require.Equal(t, "2", get(t, s, "a"))
	require.Equal(t, "<none>", get(t, s, "b"))
	close(release)
	db.Discard()
	require.Equal(t, "1", get(t, s, "a"), "a discard keeps the commit being applied")
	require.Equal(t, "1", get(t, s, "b"))
	require.Equal(t, "<none>", get(t, s, "c"))

	require.NoError(t, s.Put("c", "3"))
	require.NoError(t, db.CommitAsync(cp(2)), "waits for the previous apply, then hands over this one")
	require.Equal(t, int64(2), db.Checkpoint().Offsets["app-s-changelog"])
	require.NoError(t, db.Close(), "waits for the last apply")

	db = open(t, fs)
	defer db.Close()
	s = kv(t, db, &changelog{})
	require.Equal(t, "1", get(t, s, "a"))
	require.Equal(t, "1", get(t, s, "b"))
	require.Equal(t, "3", get(t, s, "c"))
	require.Equal(t, int64(2), db.Checkpoint().Offsets["app-s-changelog"])
}

// After an apply failed, no later transaction is applied: the database's
// checkpoint never claims changelog offsets whose writes it lacks, so a
// restore from it replays the failed transaction too.
func TestFailedApplyIsNotBuiltOn(t *testing.T) {
	fs := vfs.NewMem()
	db := openEach(t, fs)
	s := kv(t, db, &changelog{})
	require.NoError(t, s.Put("base", "0"))
	require.NoError(t, db.Commit(cp(1)))

	broken := errors.New("disk on fire")
	state.SetApplyHook(db, func() error { return broken })
	require.NoError(t, s.Put("a", "1"))
	require.NoError(t, db.CommitAsync(cp(2)), "the failure is not known yet")
	require.Equal(t, "1", get(t, s, "a"), "the failed commit's writes are still read")
	state.SetApplyHook(db, nil)
	require.NoError(t, s.Put("b", "2"))
	require.ErrorIs(t, db.CommitAsync(cp(3)), broken)
	require.ErrorIs(t, db.Commit(cp(3)), broken, "and every later commit")
	require.NoError(t, db.Close(), "the failure was reported already")

	db = open(t, fs)
	defer db.Close()
	s = kv(t, db, &changelog{})
	require.Equal(t, int64(1), db.Checkpoint().Offsets["app-s-changelog"])
	require.Equal(t, "0", get(t, s, "base"))
	require.Equal(t, "<none>", get(t, s, "a"))
	require.Equal(t, "<none>", get(t, s, "b"))
}

// failingApply returns a DB whose commit of a=1 is being applied and will
// fail with the returned error, and its store.
func failingApply(t *testing.T) (*state.DB, *state.KeyValue[string, string], error) {
	t.Helper()
	db := openEach(t, vfs.NewMem())
	s := kv(t, db, &changelog{})
	broken := errors.New("disk on fire")
	state.SetApplyHook(db, func() error { return broken })
	require.NoError(t, s.Put("a", "1"))
	require.NoError(t, db.CommitAsync(cp(1)))
	return db, s, broken
}

// Close reports a failed apply that no commit reported.
func TestCloseReportsFailedApply(t *testing.T) {
	db, _, broken := failingApply(t)
	require.ErrorIs(t, db.Close(), broken)
}

// An iterator sees the writes being applied and the pending ones, also
// after a record's rollback.
func TestRangeDuringApply(t *testing.T) {
	db := openEach(t, vfs.NewMem())
	defer db.Close()
	s := kv(t, db, &changelog{})
	release := make(chan struct{})
	state.SetApplyHook(db, func() error { <-release; return nil })
	defer close(release)
	collect := func() []string { return pairs(t, s.All()) }
	require.NoError(t, s.Put("a", "1"))
	require.NoError(t, s.Put("b", "1"))
	require.NoError(t, db.CommitAsync(cp(1)))
	require.NoError(t, s.Put("c", "2"))
	require.Equal(t, []string{"a=1", "b=1", "c=2"}, collect())
	db.Mark()
	require.NoError(t, s.Delete("a"))
	require.NoError(t, s.Put("b", "2"))
	require.NoError(t, s.Put("d", "2"))
	require.Equal(t, []string{"b=2", "c=2", "d=2"}, collect())
	db.Rollback()
	require.Equal(t, []string{"a=1", "b=1", "c=2"}, collect())
}

// A discard after a failed apply cannot fall back on the database, which
// lacks the failed commit: reads fail from then on.
func TestDiscardAfterFailedApply(t *testing.T) {
	db, s, broken := failingApply(t)
	require.NoError(t, s.Put("a", "2"))
	require.ErrorIs(t, db.Discard(), broken)
	_, _, err := s.Get("a")
	require.ErrorIs(t, err, broken)
	require.ErrorIs(t, s.Put("b", "1"), broken)
	require.ErrorIs(t, db.Close(), broken)
}
