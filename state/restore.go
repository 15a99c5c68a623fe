package state

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// ApplyRestored writes one changelog record of the store with the given
// prefix (StorePrefix) during a restore: a nil value deletes. Restored
// writes are not changelogged again and are not visible to reads until
// Commit applies them with the checkpoint they reach.
func (d *DB) ApplyRestored(storePrefix, key, value []byte) error {
	if d.restoring == nil {
		d.restoring = d.pdb.NewBatch()
	}
	d.keyBuf = append(append(d.keyBuf[:0], storePrefix...), key...)
	if value == nil {
		return d.restoring.Delete(d.keyBuf, nil)
	}
	return d.restoring.Set(d.keyBuf, value, nil)
}

// restoreDeleteRange deletes, during a restore, every key in [lower,
// upper): a dropped segment of a Segmented store.
func (d *DB) restoreDeleteRange(lower, upper []byte) error {
	if d.restoring == nil {
		d.restoring = d.pdb.NewBatch()
	}
	return d.restoring.DeleteRange(lower, upper, nil)
}

// commitRestored applies the restored records with the checkpoint cp,
// synchronously.
func (d *DB) commitRestored(cp Checkpoint) error {
	for _, w := range d.dirty {
		if w.e.dirty {
			return errors.New("state: commit: restored and processed writes in one batch")
		}
	}
	// Earlier commits first: the restored writes bypass the entries,
	// which are dropped below.
	err := d.applyAll()
	var b []byte
	if err == nil {
		b, err = cp.encode()
	}
	if err == nil {
		err = d.restoring.Set(checkpointKey, b, nil)
	}
	if err == nil {
		err = d.restoring.Commit(pebble.NoSync)
	}
	if err == nil && d.flushDue(int(d.restoring.Count())) {
		d.asyncFlush()
	}
	d.restoring.Close()
	d.restoring = nil
	// Restored writes bypassed the entries; none is dirty or unapplied.
	clear(d.entries)
	d.clean.reset()
	d.drops++
	d.limit = cacheSize
	d.dropView()
	if err != nil {
		if d.failed == nil {
			d.failed = fmt.Errorf("state: commit: %w", err)
		}
		d.reported = true
		return d.failed
	}
	d.cp = cp
	for _, l := range d.listeners {
		l.committed()
	}
	return nil
}
