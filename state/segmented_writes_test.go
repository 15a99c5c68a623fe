package state

import (
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// A write set answers as a map of the newest writes through random puts,
// deletes, rewrites of the same keys and undos of a round's writes (a
// discarded transaction) or of its last few (a rolled-back record), with
// the table growing between writes and their undo: a grow places keys in
// the order of their old slots, not of their writes, and an undone key's
// slot emptied instead of marked gone hides the keys placed after it.
// newest lists exactly the map, each key once.
func TestSegWritesAnswerAsAMap(t *testing.T) {
	const keys, round = 5000, 1000
	rng := rand.New(rand.NewPCG(3, 5))
	seed := maphash.MakeSeed()
	hash := func(k string) uint64 { return segHash(maphash.String(seed, k), 1) }
	type undo struct {
		k, old string
		had    bool
	}
	var (
		w     segWrites
		model = map[string]string{} // "": a delete
		log   []undo                // one per write
	)
	undoTo := func(n int) {
		w.truncate(n)
		for len(log) > n {
			u := log[len(log)-1]
			log = log[:len(log)-1]
			if u.had {
				model[u.k] = u.old
			} else {
				delete(model, u.k)
			}
		}
	}
	check := func() {
		t.Helper()
		for k, v := range model {
			got, ok := w.get(hash(k), []byte(k))
			require.True(t, ok, "key %s", k)
			if v == "" {
				require.Nil(t, got, "key %s deleted", k)
			} else {
				require.Equal(t, v, string(got), "key %s", k)
			}
		}
		for range 20 {
			k := "absent" + strconv.Itoa(rng.IntN(1000))
			_, ok := w.get(hash(k), []byte(k))
			require.False(t, ok)
		}
		listed := map[string]string{}
		w.newest([]byte{}, nil, func(k, v []byte) {
			_, dup := listed[string(k)]
			require.False(t, dup, "%s listed twice", k)
			listed[string(k)] = string(v)
		})
		require.Equal(t, model, listed)
	}
	grows := 0
	for rounds := range 150 {
		mark := len(log)
		size := len(w.slots)
		for range 1 + rng.IntN(round) {
			k := "k" + strconv.Itoa(rng.IntN(keys))
			v := []byte("v" + strconv.Itoa(len(log)))
			if rng.IntN(10) == 0 {
				v = nil
			}
			old, had := model[k]
			log = append(log, undo{k, old, had})
			hk, hv := w.put(hash(k), []byte(k), v)
			require.Equal(t, k, string(hk))
			require.Equal(t, v, hv)
			model[k] = string(v)
			if rng.IntN(50) == 0 {
				undoTo(max(mark, len(log)-rng.IntN(4)))
			}
		}
		if len(w.slots) != size && size > 0 {
			grows++
		}
		if rng.IntN(2) == 0 {
			undoTo(mark)
		}
		if rounds == 75 {
			w.reset()
			model, log = map[string]string{}, nil
		}
		check()
	}
	require.Positive(t, grows, "undos across grows")
}

// Keys whose slots are all the table's last: their probe sequence wraps
// around its end, and a grow, which moves keys in the order of their old
// slots, places the wrapped ones, written later, before the first ones.
// Undoing a later write must not hide the first keys (its slot is marked
// gone, not emptied).
func TestSegWritesUndoAfterGrow(t *testing.T) {
	var w segWrites
	const h = ^uint64(0)
	for i := range 511 {
		k := "a" + strconv.Itoa(i)
		w.put(h, []byte(k), []byte("v"))
	}
	mark := len(w.recs)
	size := len(w.slots)
	w.put(h, []byte("b"), []byte("v")) // wraps to the table's start
	w.put(h, []byte("c"), []byte("v")) // grows first
	require.Greater(t, len(w.slots), size)
	w.truncate(mark)
	for i := range 511 {
		k := "a" + strconv.Itoa(i)
		_, ok := w.get(h, []byte(k))
		require.True(t, ok, "key %s", k)
	}
	for _, k := range []string{"b", "c"} {
		_, ok := w.get(h, []byte(k))
		require.False(t, ok, "key %s undone", k)
	}
}
