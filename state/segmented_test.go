package state_test

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
)

const segWidth = 10 * time.Millisecond

func segmented(t *testing.T, db *state.DB, log state.Changelog) *state.Segmented[string, string] {
	t.Helper()
	s, err := state.NewSegmented(db, "ids", "app-ids-changelog", log, serde.String, serde.String, segWidth)
	require.NoError(t, err)
	return s
}

// A pass drops the segments that ended by now, whole, in segment order
// and key order within one; an entry of a segment that has not ended
// stays, past its expiry (Get returns it, with that expiry); a moved
// entry leaves its old segment. The changelog gets the writes in packs,
// one per segment and flush, and a tombstone for each pack of a segment
// once a pass begins dropping it; a put behind the passes (into a
// segment they dropped) starts the segment's packs again, and a restore
// of the whole changelog holds what the store holds.
func TestSegmentedDropsWholeSegments(t *testing.T) {
	log := &changelog{}
	s := segmented(t, open(t, vfs.NewMem()), recorder{log})
	require.NoError(t, s.Put("b", "1", ms(12))) // segment 1: [10, 20)
	require.NoError(t, s.Put("a", "2", ms(15)))
	require.NoError(t, s.Put("c", "3", ms(3)))  // segment 0
	require.NoError(t, s.Put("d", "4", ms(25))) // segment 2
	require.NoError(t, s.Put("d", "5", ms(4)))  // moved to segment 0
	require.Equal(t, "5@4", getExp(t, s, "d"))
	require.Empty(t, log.raw, "nothing is appended before the flush")
	require.NoError(t, s.FlushChangelog())

	require.Equal(t, []string{"c=3", "d=5"}, expireAll(t, s, 9))
	require.Empty(t, expireAll(t, s, 15), "segment 1 has not ended")
	require.Equal(t, "2@15", getExp(t, s, "a"), "past its expiry, not dropped yet")
	require.Equal(t, []string{"a=2", "b=1"}, expireAll(t, s, 19))
	require.Equal(t, "<none>", getExp(t, s, "a"))
	require.Empty(t, expireAll(t, s, 100), "d left segment 2")
	require.NoError(t, s.FlushChangelog())
	require.NoError(t, s.Put("e", "6", ms(5))) // behind the passes
	require.NoError(t, s.FlushChangelog())

	require.Equal(t, []string{
		"pack 20/0: b=1@12 a=2@15", "pack 10/0: c=3@3 d=5@4", "pack 30/0: d=4@25 d=-",
		"drop 10/0", "drop 20/0", "drop 30/0",
		"pack 10/0: e=6@5",
	}, describePacks(t, log.raw))

	// The whole changelog, restored on a fresh database.
	freshDB := open(t, vfs.NewMem())
	fresh := segmented(t, freshDB, nil)
	for _, r := range log.raw {
		require.NoError(t, fresh.RestorePacked(r.key, r.value))
	}
	require.NoError(t, freshDB.Commit(state.Checkpoint{}))
	for _, k := range []string{"a", "b", "c", "d"} {
		require.Equal(t, "<none>", getExp(t, fresh, k))
	}
	require.Equal(t, "6@5", getExp(t, fresh, "e"))
	require.Equal(t, []string{"e=6"}, expireAll(t, fresh, 100), "the restored entry behind the passes is found by the next")
}

// describePacks renders a packed changelog: "pack END/N: key=value@expiry
// ..." ("key=-" a delete), "drop END/N" for a tombstone.
func describePacks(t *testing.T, log []rawRecord) []string {
	t.Helper()
	var got []string
	for _, r := range log {
		end, n, writes, err := state.SegmentedChangelogEntries(r.key, r.value)
		require.NoError(t, err)
		if r.value == nil {
			got = append(got, fmt.Sprintf("drop %d/%d", end.UnixMilli(), n))
			continue
		}
		line := fmt.Sprintf("pack %d/%d:", end.UnixMilli(), n)
		for _, w := range writes {
			if w.Value == nil {
				line += fmt.Sprintf(" %s=-", w.Key)
				continue
			}
			exp := int64(binary.BigEndian.Uint64(w.Value))
			line += fmt.Sprintf(" %s=%s@%d", w.Key, w.Value[8:], exp)
		}
		got = append(got, line)
	}
	return got
}

// Against a model (a map, whose entries a pass at now drops when their
// segment ended by now), through random puts, moves, lookups of present
// and absent keys, passes, passes stopped part way (ExpireSome), commits,
// discards, rolled-back records, and restarts on a fresh database
// restored from the committed changelog: the store answers as the model
// at every step, a part of a pass removes only what is due, a whole pass
// removes exactly what the model drops, whatever parts ran before, and
// Scan at the end lists the model's entries.
func TestSegmentedAnswersAsAModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	type ent struct {
		v   string
		exp int64
		// doomed: a pass began dropping its segment since it was put. A
		// restore finds none of those: the changelog says which
		// segments a pass began dropping, not which entries it removed.
		doomed bool
	}
	var (
		log       = &txnLog{}
		fs        = vfs.NewMem()
		dbs       = 0
		db        *state.DB
		s         *state.Segmented[string, string]
		model     = map[string]ent{}
		committed = map[string]ent{}
		now       int64
	)
	reopen := func(restore bool) {
		if db != nil {
			require.NoError(t, db.Close())
		}
		dbs++
		var err error
		db, err = state.Open("db"+strconv.Itoa(dbs), state.Options{FS: fs, MaxUnapplied: 200})
		require.NoError(t, err)
		s = segmented(t, db, log)
		if restore {
			for _, r := range log.committed {
				require.NoError(t, s.RestorePacked(r.key, r.value))
			}
			require.NoError(t, db.Commit(state.Checkpoint{Offsets: map[string]int64{"app-ids-changelog": int64(len(log.committed))}}))
		}
	}
	reopen(false)
	defer func() { require.NoError(t, db.Close()) }()
	segment := func(exp int64) int64 { return floorDivTest(exp, segWidth.Milliseconds()) }
	doom := func(end int64) {
		for k, e := range model {
			if segment(e.exp) <= end {
				e.doomed = true
				model[k] = e
			}
		}
	}
	check := func(k string) {
		t.Helper()
		want := "<none>"
		if e, ok := model[k]; ok {
			want = fmt.Sprintf("%s@%d", e.v, e.exp)
		}
		require.Equal(t, want, getExp(t, s, k), "key %s", k)
	}
	for step := range 4000 {
		k := "k" + strconv.Itoa(rng.IntN(300))
		switch r := rng.IntN(100); {
		case r < 50: // put, mostly ahead of now
			e := ent{v: strconv.Itoa(step), exp: now + int64(rng.IntN(60)) - 5}
			require.NoError(t, s.Put(k, e.v, ms(e.exp)))
			model[k] = e
		case r < 70:
			check(k)
			check("absent" + strconv.Itoa(step))
		case r < 75: // a pass
			now += int64(rng.IntN(15))
			end := segment(now+1) - 1
			var want []string
			for mk, e := range model {
				if segment(e.exp) <= end {
					want = append(want, mk+"="+e.v)
					delete(model, mk)
				}
			}
			got := expireAll(t, s, now)
			require.ElementsMatch(t, want, got, "pass at %d", now)
		case r < 80: // part of a pass: what it removes is due
			now += int64(rng.IntN(15))
			end := segment(now+1) - 1
			limit := 1 + rng.IntN(5)
			removed := 0
			doom(end)
			_, err := s.ExpireSome(ms(now), limit, func(k, v string) error {
				e, ok := model[k]
				require.True(t, ok && e.v == v && segment(e.exp) <= end, "removed %s=%s, the model has %v", k, v, e)
				delete(model, k)
				removed++
				return nil
			})
			require.NoError(t, err)
			require.LessOrEqual(t, removed, limit)
		case r < 85: // a record rolled back
			db.Mark()
			saved := maps.Clone(model)
			n := len(log.pending)
			for range 3 {
				k := "k" + strconv.Itoa(rng.IntN(300))
				require.NoError(t, s.Put(k, "rolled back", ms(now+int64(rng.IntN(40)))))
			}
			expireAll(t, s, now+int64(rng.IntN(20)))
			db.Rollback()
			log.pending = log.pending[:n]
			model = saved
		case r < 95: // mostly left unapplied (in the map), as a worker commits
			commit := db.CommitAsync
			if rng.IntN(4) == 0 {
				commit = db.Commit
			}
			require.NoError(t, s.FlushChangelog()) // as the runtime does before the transaction ends
			require.NoError(t, commit(state.Checkpoint{StreamTime: now}))
			log.commit()
			committed = maps.Clone(model)
		case r < 98:
			if rng.IntN(2) == 0 {
				require.NoError(t, s.FlushChangelog()) // then the transaction aborts
			}
			require.NoError(t, db.Discard())
			log.pending = log.pending[:0]
			model = maps.Clone(committed)
		default: // a restart on a fresh database, restored
			require.NoError(t, db.Discard())
			log.pending = log.pending[:0]
			reopen(true)
			maps.DeleteFunc(committed, func(_ string, e ent) bool { return e.doomed })
			model = maps.Clone(committed)
		}
	}
	var want, scanned []string
	for _, k := range slices.Sorted(maps.Keys(model)) {
		check(k)
		want = append(want, fmt.Sprintf("%s=%s@%d", k, model[k].v, model[k].exp))
	}
	require.NoError(t, s.Scan(func(k, v string, expires time.Time) error {
		scanned = append(scanned, fmt.Sprintf("%s=%s@%d", k, v, expires.UnixMilli()))
		return nil
	}))
	require.ElementsMatch(t, want, scanned, "Scan")
}

// txnLog keeps a Segmented store's changelog records: those of the open
// transaction apart until it commits.
type txnLog struct{ pending, committed []rawRecord }

func (l *txnLog) Append(_ string, key, value []byte) {
	l.pending = append(l.pending, rawRecord{key: slices.Clone(key), value: slices.Clone(value)})
}

func (l *txnLog) commit() {
	l.committed = append(l.committed, l.pending...)
	l.pending = l.pending[:0]
}

func floorDivTest(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Looking up or putting keys the
// store never held reads nothing from the database but for about 1% of
// them, with a filter per segment probed.
func TestSegmentedSparesLookupsOfNewKeys(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	s := segmented(t, db, nil)
	for i := range 1000 {
		require.NoError(t, s.Put("old"+strconv.Itoa(i), "v", ms(int64(i/10))))
	}
	require.NoError(t, db.Commit(state.Checkpoint{}))
	before := state.Lookups(db)
	for i := range 1000 {
		k := "new" + strconv.Itoa(i)
		_, _, found, err := s.Get(k)
		require.NoError(t, err)
		require.False(t, found)
		require.NoError(t, s.Put(k, "v", ms(int64(200+i/10))))
	}
	require.Less(t, state.Lookups(db)-before, uint64(30), "about 1%% false positives of 1,000 new keys over 20 segments")
}

// A filter built while the open transaction has dropped a segment is
// built again after that transaction is discarded or the record rolled
// back: the entries are back, and the filter must know them.
func TestSegmentedFilterBuiltMidTransaction(t *testing.T) {
	for _, undo := range []string{"discard", "rollback"} {
		t.Run(undo, func(t *testing.T) {
			fs := vfs.NewMem()
			db := open(t, fs)
			s := segmented(t, db, nil)
			require.NoError(t, s.Put("a", "1", ms(5)))
			require.NoError(t, s.Put("b", "2", ms(25)))
			require.NoError(t, db.Commit(state.Checkpoint{}))
			require.NoError(t, db.Close())
			db, err := state.Open("db", state.Options{FS: fs}) // no filter yet
			require.NoError(t, err)
			defer db.Close()
			s = segmented(t, db, nil)

			db.Mark()
			require.Equal(t, []string{"a=1"}, expireAll(t, s, 15))
			require.Equal(t, "<none>", getExp(t, s, "a"), "the filter is built now, without a")
			if undo == "discard" {
				require.NoError(t, db.Discard())
			} else {
				db.Rollback()
			}
			require.Equal(t, "1@5", getExp(t, s, "a"))
		})
	}
}

// Segments are named by their end: a store reopened with another width
// (a dedup whose span changed) drops the entries it holds when their old
// segments end, and puts new ones in segments of the new width.
func TestSegmentedWidthChange(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	s := segmented(t, db, nil)                  // 10 ms
	require.NoError(t, s.Put("a", "1", ms(12))) // segment ending at 20
	require.NoError(t, s.Put("b", "2", ms(27))) // at 30
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.NoError(t, db.Close())

	db, err := state.Open("db", state.Options{FS: fs})
	require.NoError(t, err)
	defer db.Close()
	wide, err := state.NewSegmented(db, "ids", "app-ids-changelog", nil, serde.String, serde.String, 100*time.Millisecond)
	require.NoError(t, err)
	require.NoError(t, wide.Put("c", "3", ms(15))) // at 100
	require.Equal(t, []string{"a=1"}, expireAll(t, wide, 19))
	require.Equal(t, []string{"b=2"}, expireAll(t, wide, 29))
	require.Equal(t, "3@15", getExp(t, wide, "c"), "its segment is 100 ms wide")
	require.Empty(t, expireAll(t, wide, 98))
	require.Equal(t, []string{"c=3"}, expireAll(t, wide, 99))
}

// A Put of a new id and a Get of one allocate nothing once the store's
// buffers have grown: a dedup does both for every record.
func TestSegmentedNewKeysAllocateNothing(t *testing.T) {
	s, err := state.NewSegmented(open(t, vfs.NewMem()), "ids", "app-ids-changelog", nil, serde.String, serde.Bytes, time.Hour)
	require.NoError(t, err)
	const n = 4000
	ids := make([]string, 2*n)
	for i := range ids {
		ids[i] = "id-" + strconv.Itoa(i)
	}
	exp := ms(int64(time.Hour / time.Millisecond))
	for _, id := range ids[:n] { // the buffers grow
		require.NoError(t, s.Put(id, nil, exp))
	}
	i := n
	allocs := testing.AllocsPerRun(n-1, func() {
		_, _, found, err := s.Get(ids[i])
		if err != nil || found {
			t.Fatalf("Get(%s): found %v, err %v", ids[i], found, err)
		}
		if err := s.Put(ids[i], nil, exp); err != nil {
			t.Fatal(err)
		}
		i++
	})
	require.Zero(t, allocs, "allocations per new id")
}

// A changelog written before packs (a record per entry, key = segment and
// encoded key, no PackedHeader) still restores through Restore: a store
// upgraded in place keeps its ids.
func TestSegmentedRestoresUnpackedRecords(t *testing.T) {
	entry := func(seg int64, id string, exp int64, v string) rawRecord {
		key := append(binary.BigEndian.AppendUint64(nil, uint64(seg)^1<<63), id...)
		return rawRecord{key: key, value: append(binary.BigEndian.AppendUint64(nil, uint64(exp)), v...)}
	}
	log := []rawRecord{
		entry(10, "a", 3, "1"),
		entry(20, "b", 12, "2"),
		entry(20, "c", 15, "3"),
		{key: entry(20, "c", 0, "").key}, // a tombstone
	}
	db := open(t, vfs.NewMem())
	s := segmented(t, db, nil)
	for _, r := range log {
		require.NoError(t, s.Restore(r.key, r.value))
	}
	require.NoError(t, db.Commit(state.Checkpoint{}))
	require.Equal(t, "1@3", getExp(t, s, "a"))
	require.Equal(t, "2@12", getExp(t, s, "b"))
	require.Equal(t, "<none>", getExp(t, s, "c"))
	require.Equal(t, []string{"a=1"}, expireAll(t, s, 9))
}
