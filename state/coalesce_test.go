package state_test

import (
	"math"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/stretchr/testify/require"
)

// applied returns the value the database itself holds for store s's key k.
func applied(t *testing.T, db *state.DB, k string) string {
	t.Helper()
	v, ok, err := db.GetApplied(append(state.StorePrefix("s"), k...))
	require.NoError(t, err)
	if !ok {
		return "<none>"
	}
	return string(v)
}

// countApplies makes db count its applies.
func countApplies(db *state.DB) *atomic.Int32 {
	var n atomic.Int32
	state.SetApplyHook(db, func() error { n.Add(1); return nil })
	return &n
}

// Commits are held in memory until they wrote MaxUnapplied keys, then
// applied in one batch that writes each key once, with the checkpoint of
// the last; reads see them all along.
func TestCommitsAreAppliedTogether(t *testing.T) {
	fs := vfs.NewMem()
	db := openWith(t, state.Options{FS: fs, MaxUnapplied: 3})
	applies := countApplies(db)
	s := kv(t, db, &changelog{})

	require.NoError(t, s.Put("a", "1"))
	require.NoError(t, s.Put("b", "1"))
	require.NoError(t, db.CommitAsync(cp(1)))
	require.NoError(t, s.Put("a", "2"))
	require.NoError(t, db.CommitAsync(cp(2)))
	require.NoError(t, state.Wait(db))
	require.Equal(t, int32(0), applies.Load(), "two keys written: held")
	require.Equal(t, "<none>", applied(t, db, "a"))
	require.Equal(t, "2", get(t, s, "a"), "held commits are read")
	require.Equal(t, "1", get(t, s, "b"))

	require.NoError(t, s.Put("c", "3"))
	require.NoError(t, db.CommitAsync(cp(3)), "the third key hands all three commits over")
	require.NoError(t, state.Wait(db))
	require.Equal(t, int32(1), applies.Load(), "in one apply")
	require.Equal(t, "2", applied(t, db, "a"), "the last commit's value")
	require.Equal(t, "1", applied(t, db, "b"))
	require.Equal(t, "3", applied(t, db, "c"))

	require.NoError(t, s.Put("d", "4"))
	require.NoError(t, db.CommitAsync(cp(4)))
	require.NoError(t, db.Close(), "applies what is held")
	require.Equal(t, int32(2), applies.Load())

	db = open(t, fs)
	defer db.Close()
	require.Equal(t, int64(4), db.Checkpoint().Offsets["app-s-changelog"])
	require.Equal(t, "4", applied(t, db, "d"))
}

// A discard restores the committed values of the keys the transaction
// wrote, which the database does not have while their commits are held.
func TestDiscardRestoresHeldValues(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	applies := countApplies(db)
	s := kv(t, db, &changelog{})
	require.NoError(t, s.Put("a", "1"))
	require.NoError(t, s.Put("b", "1"))
	require.NoError(t, db.CommitAsync(cp(1)))

	require.NoError(t, s.Put("a", "2"))
	require.NoError(t, s.Delete("b"))
	require.NoError(t, s.Put("c", "2"))
	db.Mark()
	require.NoError(t, s.Put("a", "3"))
	db.Discard()
	require.Equal(t, int32(0), applies.Load(), "commit 1 is held")
	require.Equal(t, "1", get(t, s, "a"))
	require.Equal(t, "1", get(t, s, "b"))
	require.Equal(t, "<none>", get(t, s, "c"))
	require.Equal(t, []string{"a=1", "b=1"}, pairs(t, s.All()))

	require.NoError(t, s.Put("c", "4"))
	require.NoError(t, db.Commit(cp(2)))
	require.Equal(t, int32(1), applies.Load())
	require.Equal(t, "1", applied(t, db, "a"))
	require.Equal(t, "4", applied(t, db, "c"))
}

// Held writes are never evicted from the DB's entries, however many keys
// are read meanwhile.
func TestHeldWritesSurviveEviction(t *testing.T) {
	const keys = 20_000 // more than the DB caches
	db := openWith(t, state.Options{FS: vfs.NewMem(), MaxUnapplied: 10 * keys, FlushWrites: 10 * keys})
	defer db.Close()
	applies := countApplies(db)
	s := kv(t, db, &changelog{})
	for c := range 4 {
		for i := c; i < keys; i += 4 {
			require.NoError(t, s.Put("k"+strconv.Itoa(i), "v"+strconv.Itoa(i)))
		}
		require.NoError(t, db.CommitAsync(cp(int64(c+1))))
	}
	for i := range 2 * keys {
		_, _, err := s.Get("other" + strconv.Itoa(i))
		require.NoError(t, err)
	}
	require.Equal(t, int32(0), applies.Load())
	for i := range keys {
		require.Equal(t, "v"+strconv.Itoa(i), get(t, s, "k"+strconv.Itoa(i)))
	}
	require.Equal(t, "<none>", applied(t, db, "k7"))
}

// FlushWrites bounds what a crash can lose however few keys are written:
// writes committed since the last flush count, not keys.
func TestFlushWritesBoundsHeldCommits(t *testing.T) {
	db := openWith(t, state.Options{FS: vfs.NewMem(), FlushWrites: 10})
	defer db.Close()
	applies := countApplies(db)
	s := kv(t, db, &changelog{})
	for c := 1; c <= 3; c++ {
		for i := range 4 {
			require.NoError(t, s.Put("hot", strconv.Itoa(c*10+i)))
		}
		require.NoError(t, db.CommitAsync(cp(int64(c))))
		require.NoError(t, state.Wait(db))
		if c < 3 {
			require.Equal(t, int32(0), applies.Load(), "%d writes", 4*c)
		}
	}
	require.Equal(t, int32(1), applies.Load(), "12 writes reach FlushWrites")
	require.Equal(t, "33", applied(t, db, "hot"))
}

// FlushWrites bounds the input offsets checkpoints advance between
// flushes as it bounds the writes: a restart reads back the input since
// the flushed checkpoint (for the stream time), so a task that reads much
// and writes little still flushes, and that read stays bounded.
func TestFlushWritesBoundsInputSinceFlush(t *testing.T) {
	fs := vfs.NewMem()
	db := openWith(t, state.Options{FS: fs, FlushWrites: 10})
	applies := countApplies(db)
	s := kv(t, db, &changelog{})
	require.NoError(t, s.Put("k", "v"))
	at := func(in, other int64) state.Checkpoint {
		return state.Checkpoint{Offsets: map[string]int64{"c": 1}, StreamTime: in, Input: map[string]int64{"in": in, "other": other}}
	}
	require.NoError(t, db.CommitAsync(at(100, 0))) // the first: nothing to count from
	require.NoError(t, state.Wait(db))
	require.Equal(t, int32(0), applies.Load(), "1 write")
	for i := range 8 {
		require.NoError(t, s.Put("k"+strconv.Itoa(i), "v"))
	}
	require.NoError(t, db.CommitAsync(at(104, 4)))
	require.NoError(t, state.Wait(db))
	require.Equal(t, int32(0), applies.Load(), "9 writes, 8 input offsets: each bounded on its own")
	require.NoError(t, db.CommitAsync(at(106, 4)))
	require.NoError(t, state.Wait(db))
	require.Equal(t, int32(1), applies.Load(), "10 input offsets")
	require.NoError(t, db.Close())

	db = open(t, fs)
	defer db.Close()
	require.Equal(t, at(106, 4), db.Checkpoint(), "the input positions are kept with the checkpoint")
}

// Commit numbers start over before they wrap, and what is held after
// that is still held, read and applied.
func TestCommitNumbersStartOver(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	applies := countApplies(db)
	s := kv(t, db, &changelog{})
	state.SetGen(db, math.MaxUint32-2)
	for c := 1; c <= 5; c++ {
		require.NoError(t, s.Put("k"+strconv.Itoa(c), strconv.Itoa(c)))
		require.NoError(t, db.CommitAsync(cp(int64(c))))
	}
	require.NoError(t, state.Wait(db))
	require.Equal(t, int32(1), applies.Load(), "the numbering started over once")
	require.Equal(t, "2", applied(t, db, "k2"))
	require.Equal(t, "<none>", applied(t, db, "k3"), "commits after the restart are held")
	for i := range 2 * 16_384 {
		_, _, err := s.Get("other" + strconv.Itoa(i))
		require.NoError(t, err)
	}
	for c := 1; c <= 5; c++ {
		require.Equal(t, strconv.Itoa(c), get(t, s, "k"+strconv.Itoa(c)))
	}
	require.NoError(t, db.Close())

	db = open(t, fs)
	defer db.Close()
	require.Equal(t, int64(5), db.Checkpoint().Offsets["app-s-changelog"])
	require.Equal(t, "5", applied(t, db, "k5"))
}
