package state_test

import (
	"os"
	"path"
	"sort"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/stretchr/testify/require"
)

// ReadCheckpoint returns the checkpoint Open would, and writes nothing:
// the next Open finds the database as it was.
func TestReadCheckpoint(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	require.NoError(t, kv(t, db, &changelog{}).Put("a", "1"))
	want := state.Checkpoint{Offsets: map[string]int64{"app-s-changelog": 42}, StreamTime: 7, Input: map[string]int64{"in": 9}}
	require.NoError(t, db.Commit(want))
	require.NoError(t, db.Close())

	files := listFiles(t, fs, "db")
	got, err := state.ReadCheckpoint("db", state.Options{FS: fs})
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, files, listFiles(t, fs, "db"), "read-only: no file created, removed or resized")

	db = open(t, fs)
	defer db.Close()
	require.Equal(t, want, db.Checkpoint())
}

// A database with no commit has the empty checkpoint, as Open reads it.
func TestReadCheckpointOfNewDatabase(t *testing.T) {
	fs := vfs.NewMem()
	require.NoError(t, open(t, fs).Close())
	got, err := state.ReadCheckpoint("db", state.Options{FS: fs})
	require.NoError(t, err)
	require.Equal(t, state.Checkpoint{Offsets: map[string]int64{}}, got)
}

// A checkpoint that cannot be read makes Open and ReadCheckpoint fail with
// ErrCorrupt, which tells the caller to wipe and restore from the
// changelog.
func TestCorruptCheckpoint(t *testing.T) {
	fs := vfs.NewMem()
	pdb, err := pebble.Open("db", &pebble.Options{FS: fs})
	require.NoError(t, err)
	require.NoError(t, pdb.Set([]byte("\x00checkpoint"), []byte("{not json"), pebble.Sync))
	require.NoError(t, pdb.Close())
	_, err = state.Open("db", state.Options{FS: fs})
	require.ErrorIs(t, err, state.ErrCorrupt)
	require.ErrorContains(t, err, "checkpoint in db")
	_, err = state.ReadCheckpoint("db", state.Options{FS: fs})
	require.ErrorIs(t, err, state.ErrCorrupt)
	require.ErrorContains(t, err, "checkpoint in db")
}

// ReadCheckpoint of a directory with no database fails, creating nothing;
// so do invalid options. Neither is ErrCorrupt: there is nothing to wipe.
func TestReadCheckpointErrors(t *testing.T) {
	fs := vfs.NewMem()
	_, err := state.ReadCheckpoint("none", state.Options{FS: fs})
	require.Error(t, err)
	require.NotErrorIs(t, err, state.ErrCorrupt)
	_, statErr := fs.Stat("none")
	require.ErrorIs(t, statErr, os.ErrNotExist, "nothing created")

	require.NoError(t, open(t, fs).Close())
	_, err = state.ReadCheckpoint("db", state.Options{FS: fs, FlushWrites: -1})
	require.ErrorContains(t, err, "state: Options.FlushWrites is -1")
	require.NotErrorIs(t, err, state.ErrCorrupt)
}

// listFiles returns "name size" for every file under dir in fs, sorted.
func listFiles(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	require.NoError(t, err)
	var files []string
	for _, n := range names {
		fi, err := fs.Stat(path.Join(dir, n))
		require.NoError(t, err)
		files = append(files, n+" "+strconv.FormatInt(fi.Size(), 10))
	}
	sort.Strings(files)
	return files
}
