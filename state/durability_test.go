package state_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/stretchr/testify/require"
)

// The databases keep no write-ahead log. Whatever a crash leaves on disk
// must be a prefix of the commits, each with its own checkpoint: the state
// then equals a recomputation of exactly the commits the checkpoint
// claims, and a restore from it replays the rest. A batch split by a
// flush, or a checkpoint flushed apart from its writes, fails this.
func TestCrashLeavesAPrefixOfCommits(t *testing.T) {
	const (
		commits = 400
		keys    = 37 // each commit writes 5 of them, some deleted
	)
	// write is what commit i writes: key -> value, "" for a delete.
	write := func(i int) map[string]string {
		w := map[string]string{}
		for j := range 5 {
			k := "k" + strconv.Itoa((i*5+j*3)%keys)
			if (i+j)%11 == 0 {
				w[k] = ""
			} else {
				w[k] = strconv.Itoa(i)
			}
		}
		return w
	}
	// recompute is the state after commits 1..c, as pairs returns it.
	recompute := func(c int) []string {
		s := map[string]string{}
		for i := 1; i <= c; i++ {
			for k, v := range write(i) {
				if v == "" {
					delete(s, k)
				} else {
					s[k] = v
				}
			}
		}
		var want []string
		for _, k := range slices.Sorted(maps.Keys(s)) { // the store's key order
			want = append(want, k+"="+s[k])
		}
		return want
	}
	contents := func(s *state.KeyValue[string, string]) []string { return pairs(t, s.All()) }

	fs := vfs.NewCrashableMem()
	// Applies take the commits of 9 keys (two or three commits) at
	// once, and FlushWrites 23 flushes every fifth commit or so, at
	// uneven points.
	db := openWith(t, state.Options{FS: fs, FlushWrites: 23, MaxUnapplied: 9})
	s := kv(t, db, &changelog{})
	rng := rand.New(rand.NewPCG(1, 2))
	var seen []int64 // the checkpoints the crashes left
	for i := 1; i <= commits; i++ {
		for k, v := range write(i) {
			if v == "" {
				require.NoError(t, s.Delete(k))
			} else {
				require.NoError(t, s.Put(k, v))
			}
		}
		// Most commits are held, or applied in the background, still
		// running at some crashes; every seventh is applied at once.
		if i%7 != 0 {
			require.NoError(t, db.CommitAsync(cp(int64(i))))
		} else {
			require.NoError(t, db.Commit(cp(int64(i))))
		}
		if i%23 != 0 {
			continue
		}
		// A crash now: what was synced, and some of what was not.
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		cdb, err := state.Open("db", state.Options{FS: crashed})
		require.NoError(t, err, "crash after commit %d", i)
		c := cdb.Checkpoint().Offsets["app-s-changelog"]
		require.LessOrEqual(t, c, int64(i))
		cs := kv(t, cdb, &changelog{})
		require.Equal(t, recompute(int(c)), contents(cs), "crash after commit %d: state against checkpoint %d", i, c)
		require.NoError(t, cdb.Close())
		seen = append(seen, c)
	}
	require.NoError(t, db.Close())
	t.Logf("checkpoints left by the crashes: %v", seen)
	require.Positive(t, slices.Max(seen), "applied commits reach the disk without a Close")

	// Close flushed: a clean reopen has every commit.
	db = open(t, fs)
	defer db.Close()
	require.Equal(t, int64(commits), db.Checkpoint().Offsets["app-s-changelog"])
	require.Equal(t, recompute(commits), contents(kv(t, db, &changelog{})), fmt.Sprint("after ", commits, " commits"))
}

// A Segmented store holds its writes itself, not in the DB's entries, and
// the DB applies them with its own: what a crash leaves on disk is still
// a prefix of the commits with their checkpoint. Puts, moves between
// segments and expiry passes, applied a few commits at a time, some
// applies still running at the crashes: the crashed store scans as a
// recomputation of exactly the commits its checkpoint claims.
func TestSegmentedCrashLeavesAPrefixOfCommits(t *testing.T) {
	const (
		commits = 400
		keys    = 37
	)
	type ent struct {
		v   string
		exp int64
	}
	width := segWidth.Milliseconds()
	// commit runs commit i's writes on the store (s not nil) or the model.
	commit := func(i int, s *state.Segmented[string, string], model map[string]ent) {
		for j := range 5 {
			k := "k" + strconv.Itoa((i*5+j*3)%keys)
			e := ent{strconv.Itoa(i), int64(i + (j*7)%20)}
			if s != nil {
				require.NoError(t, s.Put(k, e.v, ms(e.exp)))
			} else {
				model[k] = e
			}
		}
		if i%10 == 0 {
			now := int64(i - 10)
			if s != nil {
				expireAll(t, s, now)
			} else {
				for k, e := range model {
					if floorDivTest(e.exp, width) <= floorDivTest(now+1, width)-1 {
						delete(model, k)
					}
				}
			}
		}
	}
	recompute := func(c int) []string {
		model := map[string]ent{}
		for i := 1; i <= c; i++ {
			commit(i, nil, model)
		}
		var want []string
		for k, e := range model {
			want = append(want, fmt.Sprintf("%s=%s@%d", k, e.v, e.exp))
		}
		slices.Sort(want)
		return want
	}
	contents := func(s *state.Segmented[string, string]) []string {
		var got []string
		require.NoError(t, s.Scan(func(k, v string, expires time.Time) error {
			got = append(got, fmt.Sprintf("%s=%s@%d", k, v, expires.UnixMilli()))
			return nil
		}))
		slices.Sort(got)
		return got
	}
	restoredCP := func(c int64) state.Checkpoint {
		return state.Checkpoint{Offsets: map[string]int64{"app-ids-changelog": c}}
	}

	fs := vfs.NewCrashableMem()
	db := openWith(t, state.Options{FS: fs, FlushWrites: 23, MaxUnapplied: 9})
	s := segmented(t, db, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	var seen []int64
	for i := 1; i <= commits; i++ {
		commit(i, s, nil)
		if i%7 != 0 {
			require.NoError(t, db.CommitAsync(restoredCP(int64(i))))
		} else {
			require.NoError(t, db.Commit(restoredCP(int64(i))))
		}
		if i%23 != 0 {
			continue
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		cdb, err := state.Open("db", state.Options{FS: crashed})
		require.NoError(t, err, "crash after commit %d", i)
		c := cdb.Checkpoint().Offsets["app-ids-changelog"]
		require.LessOrEqual(t, c, int64(i))
		require.Equal(t, recompute(int(c)), contents(segmented(t, cdb, nil)), "crash after commit %d: state against checkpoint %d", i, c)
		require.NoError(t, cdb.Close())
		seen = append(seen, c)
	}
	require.NoError(t, db.Close())
	t.Logf("checkpoints left by the crashes: %v", seen)
	require.Positive(t, slices.Max(seen), "applied commits reach the disk without a Close")

	db = open(t, fs)
	defer db.Close()
	require.Equal(t, int64(commits), db.Checkpoint().Offsets["app-ids-changelog"])
	require.Equal(t, recompute(commits), contents(segmented(t, db, nil)))
}
