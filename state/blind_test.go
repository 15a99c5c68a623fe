package state_test

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
)

func value(t *testing.T, db *state.DB, key string) string {
	t.Helper()
	v, ok, err := db.Get([]byte(key))
	require.NoError(t, err)
	if !ok {
		return "<none>"
	}
	return string(v)
}

// A blind write (one that does not read the value it replaces) over a key
// the database holds is seen at once, and undone by a rollback or a
// discard to the value the database holds, not to "absent"; committed, it
// is an ordinary write.
func TestBlindWriteUndone(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	require.NoError(t, state.WriteBlind(db, []byte("k"), []byte("old")))
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, db.Close())

	db = open(t, fs) // no entry for k: the next write to it is blind
	db.Mark()
	require.NoError(t, state.WriteBlind(db, []byte("k"), []byte("new")))
	require.NoError(t, state.WriteBlind(db, []byte("k"), []byte("newer")))
	require.Equal(t, "newer", value(t, db, "k"))
	db.Rollback()
	require.Equal(t, "old", value(t, db, "k"), "a rollback goes back to the database's value")

	require.NoError(t, db.Close())
	db = open(t, fs)
	require.NoError(t, state.WriteBlind(db, []byte("k"), nil))
	require.Equal(t, "<none>", value(t, db, "k"))
	require.NoError(t, db.Discard())
	require.Equal(t, "old", value(t, db, "k"), "a discard goes back to the database's value")

	require.NoError(t, state.WriteBlind(db, []byte("k"), []byte("committed")))
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, db.Discard())
	require.Equal(t, "committed", value(t, db, "k"))
	require.NoError(t, db.Close())
}
