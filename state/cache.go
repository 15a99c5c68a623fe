package state

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// cacheSize bounds the entries of one task's DB, unless more of them are
// pending or unapplied.
const cacheSize = 1 << 14

// entry is the state of one key: 48 bytes, as there may be many.
type entry struct {
	key   string
	value []byte // as of the pending writes; nil: absent. Never modified.
	gen   uint32 // the commit that last wrote it; 0: none since loaded
	dirty bool   // written in the open transaction
	// blind: written without reading its committed value (writeBlind),
	// which is then unknown until the commit: undoing the write drops
	// the entry, and the next read loads the value from the database.
	blind bool
	// lagged: in DB.viewLag, so that a key written again and again
	// before the next iterator goes into the view once.
	lagged bool
	// unread: made by a blind write and not read since, as a dedup's new
	// ids are: once its write is applied it is no cache worth keeping.
	unread bool
}

// unapplied reports whether e holds a committed write that the database
// may not have yet.
func (d *DB) unapplied(e *entry) bool { return e.gen > d.applied }

// entry returns key's entry, loading it from the database if needed.
func (d *DB) entry(key []byte) (*entry, error) {
	if e := d.entries[string(key)]; e != nil {
		e.unread = false
		return e, nil
	}
	if d.lost {
		return nil, d.failed
	}
	// No entry: the database has the key's current value.
	d.lookups++
	v, closer, err := d.pdb.Get(key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		v = nil
	case err != nil:
		return nil, fmt.Errorf("state: get: %w", err)
	default:
		v = append(make([]byte, 0, len(v)), v...) // never nil
		closer.Close()
	}
	if d.full() {
		d.evict()
	}
	e := &entry{key: string(key), value: v}
	d.entries[e.key] = e
	d.clean.push(e)
	return e, nil
}

// full reports whether evict should run: the entries reached their limit,
// or the limit grew large (a transaction wrote a great many keys) and
// every commit has been applied, so that most entries can go.
func (d *DB) full() bool {
	return len(d.entries) >= d.limit || d.limit > 4*cacheSize && d.applied == d.gen && len(d.dirty) == 0
}

// evict drops the entries that only cache the database, in place: those
// the clean list names, or, every walkEvery evictions and when the list
// overflowed, every one (a walk of the whole map, which also finds any
// the list missed). A Go map never shrinks: once the map has held four
// times what stays (a large transaction's writes), the entries that stay
// move to a new map instead, so that its table does not keep that size.
func (d *DB) evict() {
	d.reap()
	d.peak = max(d.peak, len(d.entries))
	d.drops++
	if len(d.dirty) == 0 && d.applied == d.gen {
		// Nothing to keep (the start of a transaction, every commit
		// applied): a new map, not a walk of the old one, which after
		// a large transaction holds millions of entries.
		d.entries = make(map[string]*entry, cacheSize)
		d.clean.reset()
		d.peak = 0
		d.limit = cacheSize
		return
	}
	d.evictions++
	if d.clean.overflowed || walkEvery > 0 && d.evictions%walkEvery == 0 {
		for k, e := range d.entries {
			if !e.dirty && !d.unapplied(e) {
				delete(d.entries, k)
			}
		}
	} else {
		for _, e := range d.clean.entries {
			if d.entries[e.key] == e && !e.dirty && !d.unapplied(e) {
				delete(d.entries, e.key)
			}
		}
	}
	d.clean.reset()
	keep := len(d.entries)
	if d.peak >= 4*max(keep, cacheSize) {
		old := d.entries
		d.entries = make(map[string]*entry, keep+cacheSize/4)
		for k, e := range old {
			d.entries[k] = e
		}
		d.peak = len(d.entries)
	}
	// The entries that stay (pending, unapplied) count towards cacheSize;
	// room for at least a quarter of it, and for as many again as stay,
	// is always left: evict runs at most once per cacheSize/4 new
	// entries, and a transaction that writes a great many keys (an expiry
	// pass after a jump in stream time) does not walk them all again
	// every cacheSize/4 keys.
	d.limit = max(cacheSize, len(d.entries)+max(cacheSize/4, len(d.entries)))
}

// walkEvery is how often evict walks the whole map rather than the clean
// list.
var walkEvery uint64 = 16 // a variable for tests

// cleanList lists entries that may only cache the database: read from
// it, applied, or back to their committed value by Discard or Rollback.
// An entry written again since it was listed, or listed twice, is
// skipped by evict. The list holds at most maxClean entries: past that
// it is dropped, and the next evict walks the map.
type cleanList struct {
	entries    []*entry
	overflowed bool
}

// maxClean bounds a cleanList.
const maxClean = 4 * cacheSize

func (l *cleanList) push(es ...*entry) {
	if l.overflowed {
		return
	}
	if len(l.entries)+len(es) > maxClean {
		l.overflowed = true
		clear(l.entries)
		l.entries = l.entries[:0]
		return
	}
	l.entries = append(l.entries, es...)
}

func (l *cleanList) reset() {
	clear(l.entries)
	l.entries = l.entries[:0]
	l.overflowed = false
}
