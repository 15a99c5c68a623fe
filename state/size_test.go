package state_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/stretchr/testify/require"
)

// Size counts a store's keys as of the pending writes, wherever they
// are: applied to Pebble and flushed, committed but held in memory,
// pending; a key deleted since is not counted, another store's keys
// neither. Its disk estimate grows once the writes are flushed. Counting
// changes nothing: a discard after it still drops the pending writes.
func TestSizeCountsTheKeysOfOneStore(t *testing.T) {
	db := openWith(t, state.Options{FS: vfs.NewMem(), MaxUnapplied: 1 << 20})
	defer db.Close()
	log := &changelog{}
	s := kv(t, db, log)
	other, err := state.NewKeyValue(db, "other", "app-other-changelog", log, serde.String, serde.String)
	require.NoError(t, err)
	size := func() (int64, uint64) {
		t.Helper()
		keys, disk, err := db.Size(state.StorePrefix("s"))
		require.NoError(t, err)
		return keys, disk
	}

	for i := range 1000 {
		require.NoError(t, s.Put(fmt.Sprint("k", i), "v"))
		require.NoError(t, other.Put(fmt.Sprint("k", i), "v"))
	}
	require.NoError(t, db.Commit(state.Checkpoint{}))
	flushed, err := db.Flush()
	require.NoError(t, err)
	<-flushed
	keys, disk := size()
	require.EqualValues(t, 1000, keys, "applied and flushed")
	require.Positive(t, disk)

	require.NoError(t, s.Delete("k0"))
	require.NoError(t, s.Put("k0b", "v"))
	require.NoError(t, db.CommitAsync(state.Checkpoint{}))
	keys, _ = size()
	require.EqualValues(t, 1000, keys, "committed, held in memory: one deleted, one added")

	require.NoError(t, s.Put("pending", "v"))
	require.NoError(t, s.Delete("k1"))
	require.NoError(t, s.Put("k2", "again"))
	keys, _ = size()
	require.EqualValues(t, 1000, keys, "pending: one added, one deleted, one overwritten")
	require.NoError(t, db.Discard())
	keys, _ = size()
	require.EqualValues(t, 1000, keys, "the pending writes discarded")
	require.Equal(t, "v", get(t, s, "k1"))
	require.Equal(t, "<none>", get(t, s, "pending"))
}
