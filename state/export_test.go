package state

import "hash/maphash"

// SetApplyHook makes every later apply of d call f on its goroutine before
// it writes; an error from f fails the apply.
func SetApplyHook(d *DB, f func() error) { d.applyHook = f }

// Wait waits for the apply in progress, as the DB does before the next.
func Wait(d *DB) error { return d.wait() }

// SetGen numbers d's next commit g+1, as if g commits had been made.
func SetGen(d *DB, g uint32) { d.gen, d.handed, d.applied = g, g, g }

// PassPoints returns how many keys the last Expire pass of s stepped over,
// deleted ones included.
func PassPoints[K, V any](s *Expiring[K, V]) uint64 { return s.passPoints }

// WriteBlind makes value key's pending value without reading the old one.
func WriteBlind(d *DB, key, value []byte) error { return d.writeBlind(key, value) }

// Lookups returns how many reads of d went to Pebble.
func Lookups(d *DB) uint64 { return d.lookups }

// FilterProbe returns a bloom filter of room n with keys added, and its
// test for a key.
func FilterProbe(n int, keys [][]byte) func([]byte) bool {
	f := &keyFilter{slice: 1, seed: maphash.MakeSeed()}
	b := newBloom(n)
	for _, k := range keys {
		b.add(f.hash(k))
	}
	return func(k []byte) bool { return b.mayHold(f.hash(k)) }
}

// SetFilterRoom sets the room of a new slice's key filter and returns a
// function that sets it back.
func SetFilterRoom(n int) func() {
	old := minBloomKeys
	minBloomKeys = n
	return func() { minBloomKeys = old }
}

// ViewLag returns how many entries wait to be written into d's view.
func ViewLag(d *DB) int { return len(d.viewLag) }

// MapPeak returns the most entries d's map has held since it was made.
func MapPeak(d *DB) int { return d.peak }

// CompactionsSettled reports whether d's database has no compaction
// running and no compaction debt.
func CompactionsSettled(d *DB) bool {
	m := d.pdb.Metrics()
	return m.Compact.NumInProgress == 0 && m.Compact.EstimatedDebt == 0
}

// SetWalkEvery makes evict walk the whole map every n evictions (0:
// never, unless its clean list overflowed) and returns a function that
// sets it back.
func SetWalkEvery(n uint64) func() {
	old := walkEvery
	walkEvery = n
	return func() { walkEvery = old }
}

// Entries returns how many entries d's map holds.
func Entries(d *DB) int { return len(d.entries) }

// EvictNow runs evict, with an open transaction's writes pending, and
// returns how many entries that only cache the database it left.
func EvictNow(d *DB) int {
	d.evict()
	n := 0
	for _, e := range d.entries {
		if !e.dirty && !d.unapplied(e) {
			n++
		}
	}
	return n
}

// Scans returns "key=value" of every key in [lower, upper) as of the
// pending writes, read through the view and read by merging the
// database with the map.
func Scans(d *DB, lower, upper string) (view, merged []string, err error) {
	collect := func(out *[]string) func(k, v []byte) bool {
		return func(k, v []byte) bool {
			*out = append(*out, string(k)+"="+string(v))
			return true
		}
	}
	if err := d.scan([]byte(lower), []byte(upper), collect(&view)); err != nil {
		return nil, nil, err
	}
	err = d.scanMerged([]byte(lower), []byte(upper), collect(&merged))
	return view, merged, err
}
