package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// scan calls each with every key in [lower, upper) and its value, as of
// the pending writes, in key order, until each returns false. Both are
// valid during the call only.
func (d *DB) scan(lower, upper []byte, each func(key, value []byte) bool) error {
	it, err := d.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var verr error
	for ok := it.First(); ok; ok = it.Next() {
		var v []byte
		if v, verr = it.ValueAndErr(); verr != nil || !each(it.Key(), v) {
			break
		}
	}
	err = errors.Join(verr, it.Error())
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return err
}

// scanMerged is scan without the view: the database's applied keys
// merged with the map's entries in [lower, upper), which it finds by
// walking the whole map. For a range iterated now and then (a segmented
// store's expiry pass), where keeping the view current would cost an
// insert into its skiplist per write, and the memory of every unapplied
// write twice.
func (d *DB) scanMerged(lower, upper []byte, each func(key, value []byte) bool) error {
	if d.lost {
		return d.failed
	}
	lo, hi := string(lower), string(upper)
	var es []*entry
	for k, e := range d.entries {
		if k >= lo && k < hi {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int { return strings.Compare(a.key, b.key) })
	over := make([]overlay, len(es))
	for i, e := range es {
		over[i] = overlay{[]byte(e.key), e.value}
	}
	return d.scanOverlay(lower, upper, over, each)
}

// overlay is a write the database does not have: a nil value deletes.
type overlay struct{ key, value []byte }

// scanOverlay calls each with every key in [lower, upper) and its value,
// in key order, until each returns false: the database's applied keys
// merged with over, the writes it does not have in that range, in key
// order, each key once.
func (d *DB) scanOverlay(lower, upper []byte, over []overlay, each func(key, value []byte) bool) error {
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var verr error
	ok := it.First()
	for ok || len(over) > 0 {
		if len(over) > 0 && (!ok || bytes.Compare(over[0].key, it.Key()) <= 0) {
			e := over[0]
			over = over[1:]
			if ok && bytes.Equal(e.key, it.Key()) {
				ok = it.Next() // the entry is newer than the database
			}
			if e.value != nil && !each(e.key, e.value) {
				break
			}
			continue
		}
		var v []byte
		if v, verr = it.ValueAndErr(); verr != nil || !each(it.Key(), v) {
			break
		}
		ok = it.Next()
	}
	err = errors.Join(verr, it.Error())
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return err
}

// newIter returns a Pebble iterator over the database as of the pending
// writes.
func (d *DB) newIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	if d.view == nil {
		d.view = d.pdb.NewIndexedBatch()
		d.clearLag()
		for _, e := range d.entries {
			if e.dirty || d.unapplied(e) {
				if err := d.viewSet(e); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, e := range d.viewLag {
		if err := d.viewSet(e); err != nil {
			return nil, err
		}
	}
	d.clearLag()
	return d.view.NewIter(o)
}

// lag notes that e's value changed since the view was last brought up to
// date; the view takes its value as of the next iterator, once however
// often it was written.
func (d *DB) lag(e *entry) {
	if d.view != nil && !e.lagged {
		e.lagged = true
		d.viewLag = append(d.viewLag, e)
	}
}

// clearLag empties viewLag.
func (d *DB) clearLag() {
	for _, e := range d.viewLag {
		e.lagged = false
	}
	clear(d.viewLag)
	d.viewLag = d.viewLag[:0]
}

// viewSet writes e's value into the view; on failure it drops the view.
func (d *DB) viewSet(e *entry) error {
	var err error
	if e.value == nil {
		err = d.view.Delete([]byte(e.key), nil)
	} else {
		err = d.view.Set([]byte(e.key), e.value, nil)
	}
	if err != nil {
		d.dropView()
		return fmt.Errorf("state: iterate: %w", err)
	}
	return nil
}

// dropView drops the view: the next iterator builds a new one.
func (d *DB) dropView() {
	if d.view != nil {
		d.view.Close()
		d.view = nil
	}
	d.clearLag()
}

// Range iterates over the keys in [from, to) in byte order of their
// encoding; a nil bound is open. Close the iterator when done.
func (s *KeyValue[K, V]) Range(from, to *K) *Iterator[K, V] {
	it := &Iterator[K, V]{s: s}
	lower, upper := s.prefix, prefixEnd(s.prefix)
	if from != nil {
		kb, err := s.ks.Encode(*from)
		if err != nil {
			it.err = fmt.Errorf("state: %s: encode range start: %w", s.name(), err)
			return it
		}
		lower = append(bytes.Clone(s.prefix), kb...)
	}
	if to != nil {
		kb, err := s.ks.Encode(*to)
		if err != nil {
			it.err = fmt.Errorf("state: %s: encode range end: %w", s.name(), err)
			return it
		}
		upper = append(bytes.Clone(s.prefix), kb...)
	}
	it.pit, it.err = s.db.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	return it
}

// All iterates over every key of the store.
func (s *KeyValue[K, V]) All() *Iterator[K, V] { return s.Range(nil, nil) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Iterator walks a range of a KeyValue store:
//
//	it := store.All()
//	for it.Next() {
//		use(it.Key(), it.Value())
//	}
//	if err := it.Close(); err != nil { ... }
//
// Its error is sticky: after a failure Next returns false and Close (or
// Err) returns the error. It sees the open transaction's writes as of its
// creation, and must not outlive the record being processed.
type Iterator[K, V any] struct {
	s       *KeyValue[K, V]
	pit     *pebble.Iterator
	started bool
	key     K
	value   V
	err     error
}

// Next moves to the next entry and decodes it; it returns false at the end
// or on an error.
func (it *Iterator[K, V]) Next() bool {
	if it.err != nil || it.pit == nil {
		return false
	}
	if !step(it.pit, &it.started, &it.err) {
		return false
	}
	k, err := it.s.ks.Decode(it.pit.Key()[len(it.s.prefix):])
	if err != nil {
		it.err = fmt.Errorf("state: %s: decode key: %w", it.s.name(), err)
		return false
	}
	raw, err := it.pit.ValueAndErr()
	if err != nil {
		it.err = fmt.Errorf("state: %s: read value: %w", it.s.name(), err)
		return false
	}
	v, err := it.s.vs.Decode(raw)
	if err != nil {
		it.err = fmt.Errorf("state: %s: decode value: %w", it.s.name(), err)
		return false
	}
	it.key, it.value = k, v
	return true
}

// step moves pit to its first entry, or its next once started; at the end
// it sets err to the iterator's error and returns false.
func step(pit *pebble.Iterator, started *bool, err *error) bool {
	var ok bool
	if !*started {
		*started, ok = true, pit.First()
	} else {
		ok = pit.Next()
	}
	if !ok {
		*err = pit.Error()
	}
	return ok
}

// Key returns the current key: valid after Next returned true.
func (it *Iterator[K, V]) Key() K { return it.key }

// Value returns the current value: valid after Next returned true.
func (it *Iterator[K, V]) Value() V { return it.value }

// Err returns the sticky error.
func (it *Iterator[K, V]) Err() error { return it.err }

// Close releases the iterator and returns its sticky error.
func (it *Iterator[K, V]) Close() error {
	if it.pit != nil {
		if err := it.pit.Close(); err != nil && it.err == nil {
			it.err = err
		}
		it.pit = nil
	}
	return it.err
}

// Size returns how many keys start with prefix (a store's, StorePrefix)
// as of the pending writes, and Pebble's estimate of the bytes on disk of
// the files that hold them (writes not flushed yet are not on disk).
// Counting walks the keys, and the DB's entries: call it now and then,
// not per write. It reads nothing the apply running in the background
// changes, and writes nothing.
func (d *DB) Size(prefix []byte) (keys int64, diskBytes uint64, err error) {
	end := prefixEnd(prefix)
	err = d.scanMerged(prefix, end, func(_, _ []byte) bool {
		keys++
		return true
	})
	if err != nil {
		return 0, 0, err
	}
	if diskBytes, err = d.pdb.EstimateDiskUsage(prefix, end); err != nil {
		return 0, 0, fmt.Errorf("state: estimate disk usage: %w", err)
	}
	return keys, diskBytes, nil
}
