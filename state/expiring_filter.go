package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"time"
)

// KeepFilter makes the store keep, in memory, a filter of its keys: Get,
// and the read of the entry a Put replaces, answer for most keys the store
// does not hold without a database lookup. A dedup checks mostly ids it
// has never seen, and a window aggregation mostly opens new windows: for
// them a database lookup (a memtable and every level's filter and index
// blocks) is most of the cost of a record, and grows with the database.
//
// The filter is a bloom filter per slice of expiry time, slice wide (a
// span's tenth, a window's size), with about 0.1% false positives each
// (about 1% over a span's ten slices): a slice's filter is dropped once
// the committed expiry passes have removed every entry of that slice, so
// the filter stays as bounded as the store. It is built at the first
// lookup from the store's expiry index (one scan, from where expiry
// stopped), updated by Put, built again after a Restore, and is a
// superset of the keys: a write rolled back or discarded leaves its key
// in the filter (a lookup in the database answers for it). Call
// KeepFilter before the store is used; slice is rounded down to
// milliseconds, and is at least one.
func (s *Expiring[K, V]) KeepFilter(slice time.Duration) {
	s.filter = &keyFilter{slice: max(slice.Milliseconds(), 1), seed: maphash.MakeSeed()}
}

// mayHold reports whether the store may hold the entry of encoded key kb:
// false only when it surely does not.
func (s *Expiring[K, V]) mayHold(kb []byte) (bool, error) {
	f := s.filter
	if f == nil {
		return true, nil
	}
	if !f.built {
		if err := s.buildFilter(); err != nil {
			return true, err
		}
	}
	return f.mayHold(kb), nil
}

// buildFilter fills the filter from the store's expiry index, as of the
// pending writes: from the low mark on, so that it never walks over the
// entries earlier passes removed.
func (s *Expiring[K, V]) buildFilter() error {
	f := s.filter
	f.slices = f.slices[:0]
	low, err := s.low()
	if err != nil {
		return err
	}
	if err := s.scanIndex(low, func(kb []byte, exp int64) { f.add(kb, exp) }); err != nil {
		return fmt.Errorf("state: %s: build key filter: %w", s.name(), err)
	}
	f.built, f.fresh = true, true
	return nil
}

// scanIndex calls each with the encoded key and expiry of every index key
// expiring at or after from, as of the pending writes.
func (s *Expiring[K, V]) scanIndex(from int64, each func(kb []byte, exp int64)) error {
	lower := binary.BigEndian.AppendUint64(append(bytes.Clone(s.prefix), expIndex), orderedMillis(from))
	upper := append(bytes.Clone(s.prefix), expIndex+1)
	n := len(s.prefix) + 1
	return s.db.scan(lower, upper, func(k, _ []byte) bool {
		each(k[n+8:], int64(binary.BigEndian.Uint64(k[n:])^1<<63))
		return true
	})
}

// filterAdd adds encoded key kb, expiring at exp, to a built filter.
func (s *Expiring[K, V]) filterAdd(kb []byte, exp int64) {
	if f := s.filter; f != nil && f.built {
		f.add(kb, exp)
	} // else built from the index, when first needed
}

// filterUndone is told of a rollback or discard: a filter built since the
// last commit came from entries the undone writes may have removed, and
// is built again at the next lookup. Otherwise the filter still holds
// every key the undone writes removed (a bloom filter forgets nothing).
func (s *Expiring[K, V]) filterUndone() {
	if f := s.filter; f != nil && f.fresh {
		f.built = false
	}
}

// filterCommitted drops the filters of the slices the commit emptied.
func (s *Expiring[K, V]) filterCommitted() {
	if f := s.filter; f != nil {
		f.fresh = false
		s.dropExpiredSlices()
	}
}

// dropExpiredSlices drops the filters of slices whose entries the
// committed expiry passes removed: every entry expiring before the low
// mark is gone.
func (s *Expiring[K, V]) dropExpiredSlices() {
	f := s.filter
	if f == nil || !f.built || len(f.slices) == 0 {
		return
	}
	low, err := s.low()
	if err != nil {
		f.built = false // rebuilt at the next lookup
		return
	}
	f.slices = slices.DeleteFunc(f.slices, func(sl *filterSlice) bool { return (sl.n+1)*f.slice <= low })
}

// keyFilter is an Expiring store's filter of its keys: a bloom filter per
// slice of expiry time, in order of their slice.
type keyFilter struct {
	slice  int64 // milliseconds
	seed   maphash.Seed
	built  bool
	slices []*filterSlice
	// fresh: built since the last commit, from the entries as the open
	// transaction left them (without those it removed).
	fresh bool
}

// filterSlice is the filter of one slice of expiry time: bloom filters of
// growing room, keys added to the last one. When it fills, a new one with
// four times its room follows: a lookup probes each (a cache line each),
// and no key is read again to grow.
type filterSlice struct {
	n      int64 // the slice's number: it holds expiries [n*slice, (n+1)*slice)
	blooms []*blockBloom
}

func (sl *filterSlice) count() int {
	n := 0
	for _, b := range sl.blooms {
		n += b.count
	}
	return n
}

func (sl *filterSlice) add(h uint64) {
	last := sl.blooms[len(sl.blooms)-1]
	if last.count >= last.capacity {
		last = newBloom(4 * last.capacity)
		sl.blooms = append(sl.blooms, last)
	}
	last.add(h)
}

func (sl *filterSlice) mayHold(h uint64) bool {
	delta := probes(h)
	for _, b := range sl.blooms {
		if b.mayHoldProbes(h, delta) {
			return true
		}
	}
	return false
}

func (f *keyFilter) hash(kb []byte) uint64 { return maphash.Bytes(f.seed, kb) }

// add adds kb, expiring at exp, and returns its slice.
func (f *keyFilter) add(kb []byte, exp int64) *filterSlice {
	return f.addTo(floorDiv(exp, f.slice), kb)
}

// addTo adds kb to slice n, and returns the slice.
func (f *keyFilter) addTo(n int64, kb []byte) *filterSlice { return f.addHash(n, f.hash(kb)) }

// addHash adds the key of hash h to slice n, and returns the slice.
func (f *keyFilter) addHash(n int64, h uint64) *filterSlice {
	i, found := slices.BinarySearchFunc(f.slices, n, func(sl *filterSlice, n int64) int {
		switch {
		case sl.n < n:
			return -1
		case sl.n > n:
			return 1
		}
		return 0
	})
	if !found {
		// A new slice gets the room the fullest slice needed: slices of
		// a steady stream hold about as many keys each, and a filter
		// that grows scans its slice's index.
		room := minBloomKeys
		for _, sl := range f.slices {
			room = max(room, sl.count())
		}
		f.slices = slices.Insert(f.slices, i, &filterSlice{n: n, blooms: []*blockBloom{newBloom(room)}})
	}
	sl := f.slices[i]
	sl.add(h)
	return sl
}

func (f *keyFilter) mayHold(kb []byte) bool {
	h := f.hash(kb)
	for i := len(f.slices) - 1; i >= 0; i-- { // new keys are most often in the last slices
		if f.slices[i].mayHold(h) {
			return true
		}
	}
	return false
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// minBloomKeys is the least room of a new slice's filter (a variable for
// tests).
var minBloomKeys = 1024

// blockBloom is a blocked bloom filter: each key sets bloomProbes bits in one
// 512-bit block (a cache line), bloomBits bits per key of its capacity,
// about 0.1% false positives at capacity: a lookup probes the filters of
// every slice (a dedup's span has ten), so that the store's answer has
// about 1%.
type blockBloom struct {
	blocks   [][8]uint64
	capacity int
	count    int
}

const (
	bloomBits   = 16 // per key of the capacity
	bloomProbes = 10
)

func newBloom(capacity int) *blockBloom {
	nblocks := max(1, (capacity*bloomBits+511)/512)
	return &blockBloom{blocks: make([][8]uint64, nblocks), capacity: capacity}
}

func (b *blockBloom) block(h uint64) *[8]uint64 {
	hi, _ := bits.Mul64(h, uint64(len(b.blocks)))
	return &b.blocks[hi]
}

// probes returns the start of a key's probe sequence within its block:
// its hash mixed (splitmix64's finalizer), as the block is chosen by the
// hash's high bits.
func probes(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

func (b *blockBloom) add(h uint64) {
	blk := b.block(h)
	delta := probes(h)
	for range bloomProbes {
		bit := delta >> 55 // the top 9 bits: an LCG's low bits repeat
		blk[bit>>6] |= 1 << (bit & 63)
		delta = delta*0x9e3779b97f4a7c15 + 1
	}
	b.count++
}

func (b *blockBloom) mayHold(h uint64) bool { return b.mayHoldProbes(h, probes(h)) }

// mayHoldProbes is mayHold with probes(h) computed once for all the
// filters a lookup probes.
func (b *blockBloom) mayHoldProbes(h, delta uint64) bool {
	blk := b.block(h)
	for range bloomProbes {
		bit := delta >> 55
		if blk[bit>>6]&(1<<(bit&63)) == 0 {
			return false
		}
		delta = delta*0x9e3779b97f4a7c15 + 1
	}
	return true
}
