package state_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/stretchr/testify/require"
)

// changelog collects appended changelog records.
type changelog struct {
	recs []string
	raw  []rawRecord // only when written through a recorder
}

type rawRecord struct{ key, value []byte }

func (c *changelog) Append(topic string, key, value []byte) {
	v := "<nil>"
	if value != nil {
		v = strconv.Quote(string(value))
	}
	c.recs = append(c.recs, topic+" "+string(key)+"="+v)
}

func open(t *testing.T, fs vfs.FS) *state.DB {
	t.Helper()
	return openWith(t, state.Options{FS: fs})
}

// openWith opens the database "db" with opts.
func openWith(t *testing.T, opts state.Options) *state.DB {
	t.Helper()
	db, err := state.Open("db", opts)
	require.NoError(t, err)
	return db
}

func kv(t *testing.T, db *state.DB, log state.Changelog) *state.KeyValue[string, string] {
	t.Helper()
	s, err := state.NewKeyValue(db, "s", "app-s-changelog", log, serde.String, serde.String)
	require.NoError(t, err)
	return s
}

func get(t *testing.T, s *state.KeyValue[string, string], k string) string {
	t.Helper()
	v, ok, err := s.Get(k)
	require.NoError(t, err)
	if !ok {
		return "<none>"
	}
	return v
}

// pairs drains it into "key=value" strings, in its order.
func pairs(t *testing.T, it *state.Iterator[string, string]) []string {
	t.Helper()
	var got []string
	for it.Next() {
		got = append(got, it.Key()+"="+it.Value())
	}
	require.NoError(t, it.Close())
	return got
}

// Writes are visible to the open transaction at once, reach the database
// only with Commit, and vanish with Discard.
func TestPendingCommitDiscard(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	log := &changelog{}
	s := kv(t, db, log)

	require.NoError(t, s.Put("a", "1"))
	require.Equal(t, "1", get(t, s, "a"), "read your writes")
	db.Discard()
	require.Equal(t, "<none>", get(t, s, "a"))

	require.NoError(t, s.Put("a", "2"))
	require.NoError(t, s.Put("b", "3"))
	require.NoError(t, s.Delete("b"))
	require.NoError(t, db.Commit(state.Checkpoint{Offsets: map[string]int64{"app-s-changelog": 42}, StreamTime: 7}))
	require.Equal(t, []string{`app-s-changelog a="1"`, `app-s-changelog a="2"`, `app-s-changelog b="3"`, `app-s-changelog b=<nil>`}, log.recs)
	require.NoError(t, db.Close())

	db = open(t, fs)
	defer db.Close()
	s = kv(t, db, log)
	require.Equal(t, "2", get(t, s, "a"))
	require.Equal(t, "<none>", get(t, s, "b"))
	require.Equal(t, int64(42), db.Checkpoint().Offsets["app-s-changelog"])
	require.Equal(t, int64(7), db.Checkpoint().StreamTime)
}

// Rollback undoes the writes of the current record only.
func TestRollback(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	s := kv(t, db, &changelog{})
	require.NoError(t, s.Put("a", "1"))
	db.Mark()
	require.NoError(t, s.Put("a", "2"))
	require.NoError(t, s.Put("new", "x"))
	require.NoError(t, s.Put("new", "y"))
	db.Rollback()
	require.Equal(t, "1", get(t, s, "a"))
	require.Equal(t, "<none>", get(t, s, "new"))
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.Equal(t, "1", get(t, s, "a"))
	require.Equal(t, "<none>", get(t, s, "new"))
}

// Range returns keys in order, over committed and pending writes, within
// one store only.
func TestRange(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	s := kv(t, db, &changelog{})
	other, err := state.NewKeyValue(db, "t", "app-t-changelog", &changelog{}, serde.String, serde.String)
	require.NoError(t, err)
	for _, k := range []string{"c", "a", "e"} {
		require.NoError(t, s.Put(k, k+k))
	}
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, s.Put("b", "bb"))
	require.NoError(t, s.Delete("e"))
	require.NoError(t, other.Put("a", "other"))

	require.Equal(t, []string{"a=aa", "b=bb", "c=cc"}, pairs(t, s.All()))
	from, to := "b", "c"
	require.Equal(t, []string{"b=bb"}, pairs(t, s.Range(&from, &to)))
	require.Equal(t, []string{"b=bb", "c=cc"}, pairs(t, s.Range(&from, nil)))
}

// A value that no longer decodes stops the iterator with a sticky error.
func TestIteratorStickyError(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	raw, err := state.NewKeyValue(db, "s", "c", &changelog{}, serde.String, serde.String)
	require.NoError(t, err)
	require.NoError(t, raw.Put("a", "not a number"))
	ints, err := state.NewKeyValue(db, "s", "c", &changelog{}, serde.String, serde.Int64)
	require.NoError(t, err)
	it := ints.All()
	require.False(t, it.Next())
	require.False(t, it.Next())
	require.ErrorContains(t, it.Err(), "state: s: decode value")
	require.ErrorContains(t, it.Close(), "want 8 bytes")
}

// Restored records reach the database with the checkpoint of Commit, as
// one batch; they are not changelogged again.
func TestApplyRestored(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	log := &changelog{}
	s := kv(t, db, log)
	prefix := state.StorePrefix("s")
	require.NoError(t, db.ApplyRestored(prefix, []byte("a"), []byte("1")))
	require.NoError(t, db.ApplyRestored(prefix, []byte("b"), []byte("2")))
	require.NoError(t, db.ApplyRestored(prefix, []byte("a"), nil))
	require.Equal(t, "<none>", get(t, s, "b"), "not visible before Commit")
	require.NoError(t, db.Commit(state.Checkpoint{Offsets: map[string]int64{"app-s-changelog": 3}}))
	require.Equal(t, "<none>", get(t, s, "a"))
	require.Equal(t, "2", get(t, s, "b"))
	require.Empty(t, log.recs)
	require.Equal(t, int64(3), db.Checkpoint().Offsets["app-s-changelog"])

	require.NoError(t, s.Put("c", "3"))
	require.NoError(t, db.ApplyRestored(prefix, []byte("d"), []byte("4")))
	require.ErrorContains(t, db.Commit(state.Checkpoint{}), "restored and processed writes in one batch")
}

// Flush makes what is applied durable without a Close: a restore that
// calls it at its end does not replay the same tail after the next crash.
// Without it the restored records, fewer than FlushWrites, stay in the
// memtable, and a crash loses them with their checkpoint.
func TestFlushMakesRestoredRecordsDurable(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			db := open(t, fs)
			defer db.Close()
			prefix := state.StorePrefix("s")
			require.NoError(t, db.ApplyRestored(prefix, []byte("a"), []byte("1")))
			require.NoError(t, db.Commit(state.Checkpoint{Offsets: map[string]int64{"app-s-changelog": 7}}))
			if flush {
				done, err := db.Flush()
				require.NoError(t, err)
				select {
				case <-done:
				case <-time.After(time.Minute):
					t.Fatal("the flush did not finish within a minute")
				}
			}
			crashed := open(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
			defer crashed.Close()
			want, wantValue := int64(0), "<none>"
			if flush {
				want, wantValue = 7, "1"
			}
			require.Equal(t, want, crashed.Checkpoint().Offsets["app-s-changelog"])
			require.Equal(t, wantValue, get(t, kv(t, crashed, &changelog{}), "a"))
		})
	}
}

// A key written many times between two iterators goes into the view once,
// with its value as of the second iterator, through writes, rollbacks and
// deletes.
func TestViewTakesEachKeyOnce(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	s := kv(t, db, &changelog{})
	require.NoError(t, s.Put("a", "0"))
	require.Equal(t, []string{"a=0"}, pairs(t, s.All())) // the view exists
	for i := range 1000 {
		require.NoError(t, s.Put("a", strconv.Itoa(i)))
		require.NoError(t, s.Put("b", strconv.Itoa(i)))
	}
	require.Equal(t, 2, state.ViewLag(db), "two keys written 2,000 times wait once each")
	require.Equal(t, []string{"a=999", "b=999"}, pairs(t, s.All()))
	db.Mark()
	require.NoError(t, s.Put("a", "rolled back"))
	require.NoError(t, s.Delete("b"))
	require.Equal(t, []string{"a=rolled back"}, pairs(t, s.All()))
	db.Rollback()
	require.NoError(t, s.Put("c", "c"))
	require.Equal(t, []string{"a=999", "b=999", "c=c"}, pairs(t, s.All()))
	require.NoError(t, s.Delete("a"))
	require.NoError(t, s.Put("a", "again"))
	require.NoError(t, s.Delete("a"))
	require.Equal(t, []string{"b=999", "c=c"}, pairs(t, s.All()))
}

// Evictions drop cached entries in place; after a transaction that wrote
// far more keys than the cache holds, the entries that stay move to a new
// map, so that the large one's table is freed.
func TestEvictShrinksTheMapAfterALargeTransaction(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	s := kv(t, db, nil)
	for i := range 200_000 {
		require.NoError(t, s.Put("k"+strconv.Itoa(i), "v"))
	}
	require.NoError(t, db.Commit(state.Checkpoint{}))
	// Reads of keys the map does not hold make room by evicting, now
	// that the commit is applied.
	for i := range 100_000 {
		_, _, err := s.Get("other" + strconv.Itoa(i))
		require.NoError(t, err)
	}
	require.Less(t, state.MapPeak(db), 100_000, "the map that held 200,000 entries was replaced")
}

// Evict finds every entry that only caches the database through its
// clean list, without walking the map: entries read, applied, discarded
// or rolled back to their committed value. Through random reads, writes,
// commits, discards and rollbacks of 50,000 keys, an evict that does not
// walk the map leaves none of them.
func TestEvictFindsEveryCleanEntry(t *testing.T) {
	defer state.SetWalkEvery(0)()
	db := openWith(t, state.Options{FS: vfs.NewMem(), MaxUnapplied: 1000})
	defer db.Close()
	s := kv(t, db, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() string { return "k" + strconv.Itoa(rng.IntN(50_000)) }
	for txn := range 200 {
		require.NoError(t, s.Put(key(), "w")) // pending: evict keeps entries
		for op := range 1000 {
			switch r := rng.IntN(100); {
			case r < 70:
				_, _, err := s.Get(key())
				require.NoError(t, err)
			case r < 95:
				require.NoError(t, s.Put(key(), strconv.Itoa(txn)))
			default:
				db.Mark()
				k := key()
				_, _, err := s.Get(k)
				require.NoError(t, err)
				require.NoError(t, s.Put(k, "rolled back"))
				require.Zero(t, state.EvictNow(db)) // while k is pending
				db.Rollback()
			}
			if op%100 == 99 {
				require.Zero(t, state.EvictNow(db), "transaction %d: entries evict did not find", txn)
			}
		}
		if txn%5 == 0 {
			require.NoError(t, db.Discard())
		} else {
			require.NoError(t, db.CommitAsync(state.Checkpoint{}))
		}
	}
}

// The entry of a key written blind and not read leaves the map once its
// commit is applied: a cache of keys written once (a dedup's new ids)
// would only grow the map. A key read since stays, as cached reads do.
func TestUnreadBlindWritesLeaveTheMap(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	for i := range 1000 {
		require.NoError(t, state.WriteBlind(db, []byte("new"+strconv.Itoa(i)), []byte("v")))
	}
	_, ok, err := db.Get([]byte("new7"))
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, state.Wait(db))
	_, _, err = db.Get([]byte("other")) // reaps the apply
	require.NoError(t, err)
	require.Equal(t, 2, state.Entries(db), "the key read, and the one read now")
	v, ok, err := db.Get([]byte("new8"))
	require.NoError(t, err)
	require.True(t, ok, "the database has it")
	require.Equal(t, "v", string(v))
}

// A scan that merges the database's applied keys with the map's entries
// sees what a scan through the view sees: through random writes, blind
// writes, deletes, rolled-back records, commits left unapplied, applied
// commits, discards and evictions.
func TestScanMergedAnswersAsTheView(t *testing.T) {
	db := openWith(t, state.Options{FS: vfs.NewMem(), MaxUnapplied: 300})
	defer db.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	key := func() []byte { return []byte(fmt.Sprintf("k%04d", rng.IntN(3000))) }
	for step := range 20_000 {
		switch r := rng.IntN(100); {
		case r < 30:
			require.NoError(t, state.WriteBlind(db, key(), []byte(strconv.Itoa(step))))
		case r < 50:
			k := key()
			_, _, err := db.Get(k)
			require.NoError(t, err)
			require.NoError(t, state.WriteBlind(db, k, []byte(strconv.Itoa(step))))
		case r < 60:
			require.NoError(t, db.Delete(key()))
		case r < 70: // reads: the map grows, evictions run
			_, _, err := db.Get([]byte(fmt.Sprintf("other%d", rng.IntN(40_000))))
			require.NoError(t, err)
		case r < 73:
			db.Mark()
			require.NoError(t, state.WriteBlind(db, key(), []byte("rolled back")))
			require.NoError(t, db.Delete(key()))
			db.Rollback()
		case r < 80:
			require.NoError(t, db.CommitAsync(state.Checkpoint{}))
		case r < 81:
			require.NoError(t, db.Commit(state.Checkpoint{}))
		case r < 83:
			require.NoError(t, db.Discard())
		}
		db.Mark()
		if step%500 == 0 {
			from := rng.IntN(3000)
			lo, hi := fmt.Sprintf("k%04d", from), fmt.Sprintf("k%04d", from+rng.IntN(300))
			view, merged, err := state.Scans(db, lo, hi)
			require.NoError(t, err)
			require.Equal(t, view, merged, "step %d, [%s, %s)", step, lo, hi)
			view, merged, err = state.Scans(db, "k", "l")
			require.NoError(t, err)
			require.Equal(t, view, merged, "step %d, all", step)
		}
	}
}

// Pending counts the open transaction's writes, and is 0 again once they
// are committed or discarded.
func TestPending(t *testing.T) {
	db := open(t, vfs.NewMem())
	kv, err := state.NewKeyValue(db, "s", "c", &changelog{}, serde.String, serde.String)
	require.NoError(t, err)
	require.Zero(t, db.Pending())
	require.NoError(t, kv.Put("a", "1"))
	require.NoError(t, kv.Put("a", "2"))
	require.Equal(t, 2, db.Pending())
	require.NoError(t, db.Discard())
	require.Zero(t, db.Pending())
	require.NoError(t, kv.Delete("b"))
	require.Equal(t, 1, db.Pending())
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.Zero(t, db.Pending())
}
