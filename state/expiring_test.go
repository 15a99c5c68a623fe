package state_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
)

func expiring(t *testing.T, db *state.DB, log state.Changelog) *state.Expiring[string, string] {
	t.Helper()
	s, err := state.NewExpiring(db, "ids", "app-ids-changelog", log, serde.String, serde.String)
	require.NoError(t, err)
	return s
}

func ms(n int64) time.Time { return time.UnixMilli(n) }

// timedStore is what Expiring and Segmented stores of strings share.
type timedStore interface {
	Expire(now time.Time, each func(k, v string) error) error
	Get(k string) (v string, expires time.Time, found bool, err error)
}

// expireAll runs a pass at now and returns "key=value" of what it removed,
// in its order.
func expireAll(t *testing.T, s timedStore, now int64) []string {
	t.Helper()
	var got []string
	require.NoError(t, s.Expire(ms(now), func(k, v string) error {
		got = append(got, k+"="+v)
		return nil
	}))
	return got
}

func getExp(t *testing.T, s timedStore, k string) string {
	t.Helper()
	v, exp, ok, err := s.Get(k)
	require.NoError(t, err)
	if !ok {
		return "<none>"
	}
	return fmt.Sprintf("%s@%d", v, exp.UnixMilli())
}

// Entries expire in expiry order, each once, when a pass reaches their
// expiry (inclusive); a replaced entry expires at its new time only; each
// removal is a tombstone in the changelog.
func TestExpiringExpiresInOrder(t *testing.T) {
	log := &changelog{}
	s := expiring(t, open(t, vfs.NewMem()), log)
	require.NoError(t, s.Put("b", "1", ms(20)))
	require.NoError(t, s.Put("a", "2", ms(10)))
	require.NoError(t, s.Put("c", "3", ms(30)))
	require.NoError(t, s.Put("b", "4", ms(40))) // moved later
	require.Equal(t, "2@10", getExp(t, s, "a"))
	require.Equal(t, "4@40", getExp(t, s, "b"))

	require.Empty(t, expireAll(t, s, 9))
	require.Equal(t, []string{"a=2"}, expireAll(t, s, 10))
	require.Equal(t, []string{"c=3"}, expireAll(t, s, 35), "b no longer expires at 20")
	require.Equal(t, "<none>", getExp(t, s, "a"))
	require.Equal(t, "4@40", getExp(t, s, "b"))
	require.NoError(t, s.Delete("b"))
	require.Empty(t, expireAll(t, s, 100))

	require.Len(t, log.recs, 7)
	require.Equal(t, []string{"app-ids-changelog a=<nil>", "app-ids-changelog c=<nil>", "app-ids-changelog b=<nil>"}, log.recs[4:])
}

// A pass in a transaction that did not commit, or in a record that was
// rolled back, leaves nothing behind: the entries come back with the
// discard, and a later pass expires them.
func TestExpiringPassUndone(t *testing.T) {
	db := open(t, vfs.NewMem())
	s := expiring(t, db, nil)
	require.NoError(t, s.Put("a", "1", ms(10)))
	require.NoError(t, s.Put("b", "2", ms(20)))
	require.NoError(t, db.Commit(state.Checkpoint{}))

	require.Equal(t, []string{"a=1", "b=2"}, expireAll(t, s, 25))
	require.NoError(t, db.Discard())
	require.Equal(t, "1@10", getExp(t, s, "a"), "the discard brings it back")
	require.Equal(t, []string{"a=1"}, expireAll(t, s, 15), "and a pass finds it again")
	require.NoError(t, db.Commit(state.Checkpoint{}))

	db.Mark()
	require.Equal(t, []string{"b=2"}, expireAll(t, s, 25))
	db.Rollback()
	require.Equal(t, "2@20", getExp(t, s, "b"), "the rollback brings it back")
	require.Equal(t, []string{"b=2"}, expireAll(t, s, 25))
}

// A restore rebuilds the index: restored entries expire; a tombstone
// restored for an entry leaves at most an index key behind, which a pass
// drops without calling each.
func TestExpiringRestore(t *testing.T) {
	log := &changelog{}
	fs := vfs.NewMem()
	db := open(t, fs)
	s := expiring(t, db, recorder{log})
	require.NoError(t, s.Put("a", "1", ms(10)))
	require.NoError(t, s.Put("b", "2", ms(20)))
	require.NoError(t, s.Delete("a"))
	require.NoError(t, s.Put("c", "3", ms(5)))
	db.Discard() // nothing reaches this database: it is restored below

	fresh, err := state.Open("fresh", state.Options{FS: fs})
	require.NoError(t, err)
	r := expiring(t, fresh, nil)
	for _, rec := range log.raw {
		require.NoError(t, r.Restore(rec.key, rec.value))
	}
	require.NoError(t, fresh.Commit(state.Checkpoint{Offsets: map[string]int64{"app-ids-changelog": int64(len(log.raw))}}))
	require.Equal(t, "<none>", getExp(t, r, "a"))
	require.Equal(t, "2@20", getExp(t, r, "b"))
	require.Equal(t, []string{"c=3", "b=2"}, expireAll(t, r, 100))
}

// A restore of a store's tail (records after what the database holds)
// can move an entry to another expiry or delete it, and leave its old
// index key behind with the old value: a pass does not take that key's
// copy of the value for the entry's, removes nothing for it, and expires
// the moved entry at its new time, with its new value.
func TestExpiringTailRestoreLeavesNoLiveIndexKey(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	s := expiring(t, db, nil)
	require.NoError(t, s.Put("a", "1", ms(10)))
	require.NoError(t, s.Put("b", "2", ms(20)))
	require.NoError(t, s.Put("c", "3", ms(40)))
	require.NoError(t, db.Commit(state.Checkpoint{Offsets: map[string]int64{"app-ids-changelog": 3}}))
	require.NoError(t, db.Close())

	db, err := state.Open("db", state.Options{FS: fs})
	require.NoError(t, err)
	defer db.Close()
	s = expiring(t, db, nil)
	require.NoError(t, s.Restore([]byte("a"), append(binary.BigEndian.AppendUint64(nil, 30), "4"...))) // moved
	require.NoError(t, s.Restore([]byte("b"), nil))                                                    // deleted
	require.NoError(t, db.Commit(state.Checkpoint{Offsets: map[string]int64{"app-ids-changelog": 5}}))

	require.Empty(t, expireAll(t, s, 25), "the index keys of a at 10 and b at 20 are left behind")
	require.Equal(t, "4@30", getExp(t, s, "a"))
	require.Equal(t, []string{"a=4"}, expireAll(t, s, 30))
	require.NoError(t, s.Put("d", "5", ms(50)))
	require.Equal(t, []string{"c=3", "d=5"}, expireAll(t, s, 60))
}

// Outside what a restore may have left, a pass reads nothing but the
// index: the entries it removes, and their values for each, come from the
// index keys' copies, with no database lookup per entry.
func TestExpiringPassReadsOnlyTheIndex(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	s := expiring(t, db, nil)
	const n = 200
	var want []string
	for i := range int64(n) {
		k, v := fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)
		require.NoError(t, s.Put(k, v, ms(i)))
		want = append(want, k+"="+v)
	}
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, db.Close())

	db, err := state.Open("db", state.Options{FS: fs})
	require.NoError(t, err)
	defer db.Close()
	s = expiring(t, db, nil)
	before := state.Lookups(db)
	require.Equal(t, want, expireAll(t, s, n))
	require.LessOrEqual(t, state.Lookups(db)-before, uint64(2), "lookups for %d entries: the low and checked marks at most", n)
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.Equal(t, "<none>", getExp(t, s, "k000"))
}

// recorder keeps the raw changelog records, for a restore.
type recorder struct{ log *changelog }

func (r recorder) Append(topic string, key, value []byte) {
	r.log.Append(topic, key, value)
	r.log.raw = append(r.log.raw, rawRecord{key: append([]byte(nil), key...), value: value})
}

// A pass never walks over what earlier passes deleted: with 20,000
// entries expired, committed and flushed behind it, the next pass steps
// over the few keys it removes and the one that ends it, not the
// tombstones; nor does the first pass after a reopen (the low mark where
// the last pass stopped is committed with its deletions).
func TestExpiringPassSkipsWhatExpired(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	s := expiring(t, db, nil)
	const n = 20_000
	for i := range int64(n) {
		require.NoError(t, s.Put(fmt.Sprintf("k%06d", i), "v", ms(i)))
	}
	require.NoError(t, s.Put("late", "v", ms(n+10)))
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.Len(t, expireAll(t, s, n-1), n)
	require.NoError(t, db.Commit(state.Checkpoint{StreamTime: n - 1}))
	done, err := db.Flush()
	require.NoError(t, err)
	<-done

	for i := range int64(3) {
		require.NoError(t, s.Put(fmt.Sprintf("new%d", i), "v", ms(n+i)))
	}
	require.Len(t, expireAll(t, s, n+5), 3)
	require.Less(t, state.PassPoints(s), uint64(10), "the pass walked the expired keys")
	require.NoError(t, db.Commit(state.Checkpoint{StreamTime: n + 5}))
	require.NoError(t, db.Close())

	db, err = state.Open("db", state.Options{FS: fs})
	require.NoError(t, err)
	defer db.Close()
	s = expiring(t, db, nil)
	require.Equal(t, []string{"late=v"}, expireAll(t, s, n+10))
	require.Less(t, state.PassPoints(s), uint64(10), "the first pass after a reopen walked the expired keys")
}

// rangeOf returns "key=value@expiry" of the entries of it, in its order.
func rangeOf(t *testing.T, it *state.ExpiringIterator[string, string]) []string {
	t.Helper()
	var got []string
	for it.Next() {
		got = append(got, fmt.Sprintf("%s=%s@%d", it.Key(), it.Value(), it.Expires().UnixMilli()))
	}
	require.NoError(t, it.Close())
	return got
}

// Range walks entries in key order, over committed and pending writes,
// within its bounds, and not what Expire or Delete removed.
func TestExpiringRange(t *testing.T) {
	db := open(t, vfs.NewMem())
	s := expiring(t, db, &changelog{})
	require.NoError(t, s.Put("b", "1", ms(20)))
	require.NoError(t, s.Put("a", "2", ms(10)))
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, s.Put("c", "3", ms(30)))
	require.NoError(t, s.Put("d", "4", ms(40)))
	require.Equal(t, []string{"a=2@10", "b=1@20", "c=3@30", "d=4@40"}, rangeOf(t, s.All()))
	from, to := "b", "d"
	require.Equal(t, []string{"b=1@20", "c=3@30"}, rangeOf(t, s.Range(&from, &to)))
	require.Equal(t, []string{"b=1@20", "c=3@30", "d=4@40"}, rangeOf(t, s.Range(&from, nil)))
	require.Equal(t, []string{"a=2"}, expireAll(t, s, 15))
	require.NoError(t, s.Delete("c"))
	require.Equal(t, []string{"b=1@20", "d=4@40"}, rangeOf(t, s.All()))
}
