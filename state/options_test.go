package state_test

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/stretchr/testify/require"
)

// Zero fields mean their defaults; negative ones are errors, all of them
// reported, and Open refuses them without touching the file system.
func TestOptions(t *testing.T) {
	require.NoError(t, state.Options{}.Validate())
	d := state.Options{}.EnsureDefaults()
	require.Equal(t, vfs.Default, d.FS)
	require.Equal(t, state.DefaultFlushWrites, d.FlushWrites)
	require.Equal(t, state.DefaultMaxUnapplied, d.MaxUnapplied)
	set := state.Options{FlushWrites: 1, MaxUnapplied: 2}.EnsureDefaults()
	require.Equal(t, 1, set.FlushWrites)
	require.Equal(t, 2, set.MaxUnapplied)

	bad := state.Options{FS: vfs.NewMem(), FlushWrites: -1, MaxUnapplied: -2}
	err := bad.Validate()
	require.ErrorContains(t, err, "state: Options.FlushWrites is -1: it must be positive, or 0 for the default (100000)")
	require.ErrorContains(t, err, "state: Options.MaxUnapplied is -2: it must be positive, or 0 for the default (16384)")
	_, err = state.Open("db", bad)
	require.ErrorContains(t, err, "Options.FlushWrites is -1")
	require.NotErrorIs(t, err, state.ErrCorrupt, "nothing to wipe")
	names, err := bad.FS.List("")
	require.NoError(t, err)
	require.Empty(t, names, "nothing created")
}
