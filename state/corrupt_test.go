package state_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/stretchr/testify/require"
)

// writeTable writes n keys into a database in dir on the OS file system,
// commits and closes it (one flush: one table, so that opening it starts
// no compaction), and returns the table's path.
func writeTable(t *testing.T, dir string, n int) string {
	t.Helper()
	db, err := state.Open(dir, state.Options{FS: vfs.Default})
	require.NoError(t, err)
	s := kv(t, db, nil)
	for i := range n {
		require.NoError(t, s.Put(fmt.Sprintf("key-%06d", i), strings.Repeat("v", 100)))
	}
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, db.Close())
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	require.NoError(t, err)
	require.Len(t, tables, 1)
	return tables[0]
}

// A table cut short (a crash of the disk, a copy interrupted) is damage
// that a wipe and a restore from the changelog answer: Open reports
// ErrCorrupt, which Pebble's "object size mismatch" is not on its own.
func TestOpenReportsATruncatedTableAsCorrupt(t *testing.T) {
	dir := t.TempDir()
	table := writeTable(t, dir, 5_000)
	st, err := os.Stat(table)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(table, st.Size()/2))
	_, err = state.Open(dir, state.Options{FS: vfs.Default})
	require.ErrorIs(t, err, state.ErrCorrupt)
}

// Damage that Pebble finds only when it reads the block (a lookup) makes
// the DB panic with a *CorruptionPanic, and leaves the directory marked:
// the next Open reports ErrCorrupt instead of opening a database that
// fails the same way again.
func TestDamageFoundInUseMarksTheDirectory(t *testing.T) {
	dir := t.TempDir()
	const n = 5_000
	table := writeTable(t, dir, n)
	st, err := os.Stat(table)
	require.NoError(t, err)
	f, err := os.OpenFile(table, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte(strings.Repeat("\xa5", 64)), st.Size()/3) // inside a data block
	require.NoError(t, err)
	require.NoError(t, f.Close())

	db, err := state.Open(dir, state.Options{FS: vfs.Default})
	require.NoError(t, err, "the damage is in a data block: Open reads none")
	s := kv(t, db, nil)
	var found any
	func() {
		defer func() { found = recover() }()
		for i := range n {
			if _, _, err := s.Get(fmt.Sprintf("key-%06d", i)); err != nil {
				t.Fatalf("a read of a damaged block returned an error, not a corruption panic: %v", err)
			}
		}
	}()
	require.IsType(t, &state.CorruptionPanic{}, found, "reading every key must hit the damaged block")
	_, err = state.Open(dir, state.Options{FS: vfs.Default})
	require.ErrorIs(t, err, state.ErrCorrupt)
}
