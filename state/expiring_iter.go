package state

import (
	"bytes"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Range iterates over the entries whose encoded keys are in [from, to),
// in byte order of their encoding; a nil bound is open. It sees the open
// transaction's writes as of its creation, including entries past their
// expiry that Expire has not removed yet (compare ExpiringIterator.Expires
// with the stream time to skip them). Close the iterator when done.
//
// The order is that of the key codec's bytes: a codec that puts a key's
// time after the key (as window stores do) makes one key's entries
// contiguous and in time order, but a range of one key may also hold
// other keys whose encoding starts with the same bytes; callers compare
// the decoded key.
func (s *Expiring[K, V]) Range(from, to *K) *ExpiringIterator[K, V] {
	it := &ExpiringIterator[K, V]{s: s}
	entries := append(bytes.Clone(s.prefix), expEntries)
	lower, upper := entries, prefixEnd(entries)
	if from != nil {
		kb, err := s.encodeKey(*from)
		if err != nil {
			it.err = err
			return it
		}
		lower = append(bytes.Clone(entries), kb...)
	}
	if to != nil {
		kb, err := s.encodeKey(*to)
		if err != nil {
			it.err = err
			return it
		}
		upper = append(bytes.Clone(entries), kb...)
	}
	it.skip = len(entries)
	it.pit, it.err = s.db.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	return it
}

// All iterates over every entry of the store (see Range).
func (s *Expiring[K, V]) All() *ExpiringIterator[K, V] { return s.Range(nil, nil) }

// ExpiringIterator walks a range of an Expiring store:
//
//	it := store.Range(&from, &to)
//	for it.Next() {
//		use(it.Key(), it.Value(), it.Expires())
//	}
//	if err := it.Close(); err != nil { ... }
//
// Its error is sticky: after a failure Next returns false and Close (or
// Err) returns it. It must not outlive the record being processed, and
// the store must not be written while it is open.
type ExpiringIterator[K, V any] struct {
	s       *Expiring[K, V]
	pit     *pebble.Iterator
	skip    int // bytes of DB key before the encoded key
	started bool
	key     K
	value   V
	expires time.Time
	err     error
}

// Next moves to the next entry and decodes it; it returns false at the end
// or on an error.
func (it *ExpiringIterator[K, V]) Next() bool {
	if it.err != nil || it.pit == nil {
		return false
	}
	if !step(it.pit, &it.started, &it.err) {
		return false
	}
	k, err := it.s.ks.Decode(it.pit.Key()[it.skip:])
	if err != nil {
		it.err = fmt.Errorf("state: %s: decode key: %w", it.s.name(), err)
		return false
	}
	raw, err := it.pit.ValueAndErr()
	if err != nil {
		it.err = fmt.Errorf("state: %s: read value: %w", it.s.name(), err)
		return false
	}
	exp, vb, err := it.s.split(raw)
	if err != nil {
		it.err = err
		return false
	}
	v, err := it.s.vs.Decode(vb)
	if err != nil {
		it.err = fmt.Errorf("state: %s: decode value: %w", it.s.name(), err)
		return false
	}
	it.key, it.value, it.expires = k, v, time.UnixMilli(exp)
	return true
}

// Key returns the current key: valid after Next returned true.
func (it *ExpiringIterator[K, V]) Key() K { return it.key }

// Value returns the current value: valid after Next returned true.
func (it *ExpiringIterator[K, V]) Value() V { return it.value }

// Expires returns the current entry's expiry: valid after Next returned
// true.
func (it *ExpiringIterator[K, V]) Expires() time.Time { return it.expires }

// Err returns the sticky error.
func (it *ExpiringIterator[K, V]) Err() error { return it.err }

// Close releases the iterator and returns its sticky error.
func (it *ExpiringIterator[K, V]) Close() error {
	if it.pit != nil {
		if err := it.pit.Close(); err != nil && it.err == nil {
			it.err = err
		}
		it.pit = nil
	}
	return it.err
}
