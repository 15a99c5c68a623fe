package state

import (
	"bytes"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// segWrites holds writes of a Segmented store that the database does not
// have: the open transaction's and the committed ones not yet handed to
// an apply (the store's active set), or those of one apply in progress
// (its handed set). A Segmented store keeps its writes here instead of in
// the DB's entries: a dedup writes a great many keys once each, and an
// entry per key (a map insert and delete, two allocations, a pointer for
// the collector to follow, three hashes of the key) was most of the cost
// of a new id.
//
// Writes are appended, keys and values to one arena, and an open
// addressing table keyed by a hash the store already computes for its key
// filter names the newest write of each key. Each write records the one
// it shadows, so that undoing writes (a rolled-back record, a discarded
// transaction) is popping them, newest first. Nothing in it is a pointer:
// the collector never scans it.
type segWrites struct {
	arena []byte
	recs  []segRec
	// slots holds, per slot, the index+1 of the newest write of the key
	// it holds in its low 32 bits (0: an empty slot; slotGone: one whose
	// key's writes were all undone, which probes go past), and the high
	// 32 bits of the key's hash in its high 32 bits, so that a probe
	// reads the write only of a key that likely matches (a new key's
	// probes read none). Its length is a power of two.
	slots []uint64
	used  int // slots not empty
	order []int32
}

// segRec is one write: its key at arena[off:off+klen], its value right
// after it (vlen bytes; vlen -1: a delete).
type segRec struct {
	h    uint64
	off  uint32
	klen uint32
	vlen int32
	// prev is the write of the same key this one shadows (-1: none),
	// slot the key's slot.
	prev int32
	slot uint32
}

const slotGone = 1<<32 - 1

// slotOf returns the slot value of write index+1 s of a key of hash h.
func slotOf(h uint64, s int32) uint64 { return h&^(1<<32-1) | uint64(uint32(s)) }

// slotRec returns the write index+1 a slot value names (0: none).
func slotRec(v uint64) int32 {
	if uint32(v) == slotGone {
		return 0
	}
	return int32(uint32(v))
}

// segHash returns the hash of a key of segment n whose encoded key has the
// filter hash h.
func segHash(h uint64, n int64) uint64 { return probes(h ^ uint64(n)*0x9e3779b97f4a7c15) }

func (w *segWrites) key(r *segRec) []byte { return w.arena[r.off : r.off+r.klen : r.off+r.klen] }

// value returns r's value (nil: a delete); its capacity ends with it.
func (w *segWrites) value(r *segRec) []byte {
	if r.vlen < 0 {
		return nil
	}
	start := r.off + r.klen
	return w.arena[start : start+uint32(r.vlen) : start+uint32(r.vlen)]
}

// find returns the slot of key (hash h) and the index+1 of its newest
// write, or 0 and the empty slot where it would go.
func (w *segWrites) find(h uint64, key []byte) (slot uint32, rec int32) {
	if len(w.slots) == 0 {
		return 0, 0
	}
	mask := uint32(len(w.slots) - 1)
	tag := h &^ (1<<32 - 1)
	for i := uint32(h) & mask; ; i = (i + 1) & mask {
		v := w.slots[i]
		if v == 0 {
			return i, 0
		}
		if v&^(1<<32-1) != tag || uint32(v) == slotGone {
			continue
		}
		s := int32(uint32(v))
		if r := &w.recs[s-1]; r.h == h && bytes.Equal(w.key(r), key) {
			return i, s
		}
	}
}

// get returns the newest value of key (hash h), nil for a delete, and
// whether the set has a write of key at all.
func (w *segWrites) get(h uint64, key []byte) (value []byte, ok bool) {
	if _, s := w.find(h, key); s > 0 {
		return w.value(&w.recs[s-1]), true
	}
	return nil, false
}

// put appends a write of key (hash h): value, nil for a delete. It returns
// the key and value as the set holds them: they stay as they are until
// the set is reset, or the write undone (truncate).
func (w *segWrites) put(h uint64, key, value []byte) (heldKey, heldValue []byte) {
	if 2*(w.used+1) > len(w.slots) {
		w.grow()
	}
	slot, prev := w.find(h, key)
	if prev == 0 {
		w.used++
	}
	r := segRec{h: h, off: uint32(len(w.arena)), klen: uint32(len(key)), vlen: -1, prev: prev - 1, slot: slot}
	w.arena = append(w.arena, key...)
	if value != nil {
		r.vlen = int32(len(value))
		w.arena = append(w.arena, value...)
	}
	w.recs = append(w.recs, r)
	w.slots[slot] = slotOf(h, int32(len(w.recs)))
	r = w.recs[len(w.recs)-1]
	return w.key(&r), w.value(&r)
}

// grow doubles the table (at least 1,024 slots), moving every key with
// the writes that name its slot.
func (w *segWrites) grow() {
	old := w.slots
	w.slots = make([]uint64, max(1024, 2*len(old)))
	w.used = 0
	mask := uint32(len(w.slots) - 1)
	for _, v := range old {
		s := slotRec(v)
		if s == 0 {
			continue // gone slots are dropped
		}
		i := uint32(w.recs[s-1].h) & mask
		for w.slots[i] != 0 {
			i = (i + 1) & mask
		}
		w.slots[i] = v
		w.used++
		for r := s - 1; r >= 0; r = w.recs[r].prev {
			w.recs[r].slot = i
		}
	}
}

// truncate undoes the writes from the n-th on, newest first.
func (w *segWrites) truncate(n int) {
	if n >= len(w.recs) {
		return
	}
	for i := len(w.recs) - 1; i >= n; i-- {
		r := &w.recs[i]
		if r.prev >= 0 {
			w.slots[r.slot] = slotOf(r.h, r.prev+1)
		} else {
			// Not emptied: a key placed after it since (a grow
			// reorders keys) is probed for past it.
			w.slots[r.slot] = slotGone
		}
	}
	w.arena = w.arena[:w.recs[n].off]
	w.recs = w.recs[:n]
}

// reset empties the set, keeping its memory.
func (w *segWrites) reset() {
	w.arena = w.arena[:0]
	w.recs = w.recs[:0]
	clear(w.slots)
	w.used = 0
}

// newest calls each with the newest write of every key in [lower, upper)
// (upper nil: no bound), in no order.
func (w *segWrites) newest(lower, upper []byte, each func(key, value []byte)) {
	for i := range w.recs {
		r := &w.recs[i]
		if slotRec(w.slots[r.slot]) != int32(i+1) {
			continue // shadowed
		}
		k := w.key(r)
		if bytes.Compare(k, lower) >= 0 && (upper == nil || bytes.Compare(k, upper) < 0) {
			each(k, w.value(r))
		}
	}
}

// writeTo writes the newest write of every key into b, in key order. The
// apply calls it on its own goroutine, while the set is handed (nothing
// writes to it).
func (w *segWrites) writeTo(b *pebble.Batch) error {
	w.order = w.order[:0]
	for i := range w.recs {
		if slotRec(w.slots[w.recs[i].slot]) == int32(i+1) {
			w.order = append(w.order, int32(i))
		}
	}
	slices.SortFunc(w.order, func(a, b int32) int { return bytes.Compare(w.key(&w.recs[a]), w.key(&w.recs[b])) })
	for _, i := range w.order {
		r := &w.recs[i]
		var err error
		if r.vlen < 0 {
			err = b.Delete(w.key(r), nil)
		} else {
			err = b.Set(w.key(r), w.value(r), nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
