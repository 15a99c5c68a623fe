package state

import "github.com/cockroachdb/pebble/v2"

// dirtied is an entry written in the open transaction, with the value it
// had before (its committed one).
type dirtied struct {
	e         *entry
	committed []byte
}

// undo is how to undo one write.
type undo struct {
	e     *entry
	value []byte
	dirty bool
}

// Delete deletes key in the pending writes. The error is that of reading
// key's current value from the database (kept for Rollback and Discard),
// or of a failed apply (see Discard).
func (d *DB) Delete(key []byte) error { return d.write(key, nil) }

// write makes value (nil: a delete) key's pending value, and records the
// previous one for Rollback.
func (d *DB) write(key, value []byte) error {
	e, err := d.entry(key)
	if err != nil {
		return err
	}
	d.set(e, value)
	return nil
}

// writeBlind makes value key's pending value without reading the value
// it replaces, which a write must otherwise keep for Rollback and
// Discard: for keys that are almost always new (an expiry index), where
// that read is a database lookup for nothing. Undoing the write drops the
// key's entry instead; its next read loads the committed value.
func (d *DB) writeBlind(key, value []byte) error {
	if e := d.entries[string(key)]; e != nil {
		d.set(e, value)
		return nil
	}
	if d.lost {
		return d.failed
	}
	if d.full() {
		d.evict()
	}
	e := &entry{key: string(key), blind: true, unread: true}
	d.entries[e.key] = e
	d.set(e, value)
	return nil
}

// forget drops e from the entries, if it is still there: its committed
// value is not known (a blind write undone).
func (d *DB) forget(e *entry) {
	if d.entries[e.key] == e {
		delete(d.entries, e.key)
		d.drops++
	}
	e.dirty = false
}

// set makes value (nil: a delete) the pending value of e, an entry in the
// map, and records the previous one for Rollback.
func (d *DB) set(e *entry, value []byte) {
	d.undo = append(d.undo, undo{e: e, value: e.value, dirty: e.dirty})
	if !e.dirty {
		e.dirty = true
		d.dirty = append(d.dirty, dirtied{e, e.value})
	}
	d.writes++
	e.value = value
	d.lag(e)
}

// Pending returns how many writes the open transaction has made (a key
// written twice counts twice): 0 between transactions, after Commit,
// CommitAsync or Discard. Reads that must see committed state only (an
// interactive query) check it.
func (d *DB) Pending() int { return d.writes }

// Mark starts a new input record: Rollback undoes the writes made since.
func (d *DB) Mark() {
	d.undo = d.undo[:0]
	for _, h := range d.holders {
		h.marked()
	}
}

// Rollback undoes the pending writes made since Mark: a failed record's
// state changes are discarded with its outputs. It restores values held
// in memory.
func (d *DB) Rollback() {
	for i := len(d.undo) - 1; i >= 0; i-- {
		u := d.undo[i]
		if u.e.blind && !u.dirty {
			d.forget(u.e) // back before its blind write: unknown
			d.dropView()
			continue
		}
		u.e.value, u.e.dirty = u.value, u.dirty
		if !u.dirty {
			d.clean.push(u.e) // back to its committed value
		}
		d.lag(u.e)
	}
	d.writes -= len(d.undo)
	clear(d.undo)
	d.undo = d.undo[:0]
	for _, l := range d.listeners {
		l.rolledBack()
	}
}

// Discard drops the pending writes: the transaction did not commit.
// Reads see the committed writes again, applied or not. It waits for a
// background apply to finish. If an apply failed, the database misses
// committed writes: Discard returns that apply's error, every later read
// fails too, and the DB must be closed and restored.
func (d *DB) Discard() error {
	for _, w := range d.dirty {
		switch {
		case w.e.blind:
			d.forget(w.e)
		case w.e.dirty:
			w.e.value, w.e.dirty = w.committed, false
			d.clean.push(w.e)
		}
	}
	clear(d.dirty)
	d.dirty = d.dirty[:0]
	clear(d.undo)
	d.undo = d.undo[:0]
	d.writes = 0
	for _, l := range d.listeners {
		l.discarded()
	}
	d.dropView()
	if d.restoring != nil {
		d.restoring.Close()
		d.restoring = nil
	}
	if err := d.wait(); err != nil {
		d.lost = true
		clear(d.entries)
		d.clean.reset()
		d.drops++
		return err
	}
	return nil
}

// holder is a store that keeps its writes itself, out of the DB's entries
// (Segmented, see segWrites): its keys never have an entry, and it reads
// the database with getDirect. It counts its writes in DB.writes, undoes
// them when told (listener), and the DB applies them with everything
// else, in the same batch and with the same checkpoint.
type holder interface {
	listener
	marked()   // Mark: a new record starts
	held() int // keys of the committed writes not handed to an apply
	// hand hands every committed write (nothing is pending) to the next
	// apply, which calls the function returned (nil: nothing) on its
	// goroutine to write them into its batch; the holder keeps them for
	// reads until handedApplied.
	hand() func(*pebble.Batch) error
	handedApplied() // the writes handed last are in the database
}

// listener is told what becomes of the pending writes, for a store that
// keeps a hint of its own beside them (Expiring's next expiry).
type listener interface {
	rolledBack() // Rollback: the record's writes are undone
	committed()  // CommitAsync, or the commit of a restore
	discarded()  // Discard: the open transaction's writes are gone
}
