// Package state keeps a task's state in a local Pebble database whose
// every change is also written, inside the same Kafka transaction as the
// task's outputs, to a compacted changelog topic.
//
// # Atomic commit
//
// Writes of the open transaction go to a pending batch (a Pebble indexed
// batch, so reads see them). The pending batch reaches the database only
// after the Kafka transaction committed, in ONE Pebble batch together with
// the checkpoint: the next changelog offset of every store, and the task's
// stream time. Any other outcome discards it. A crash between the Kafka
// commit and the apply therefore leaves an older checkpoint, and restoring
// replays the changelog from there: a short tail, never a full rebuild.
//
// This package never begins, ends or aborts a Kafka transaction: the
// runtime (package txn) decides when to Commit or Discard.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// checkpointKey holds the checkpoint. Store keys start with a non-zero
// length byte, so they never collide with it.
var checkpointKey = []byte("\x00checkpoint")

// Checkpoint is what the database has applied: for each changelog topic,
// the offset from which a restore must replay; and the task's stream time.
type Checkpoint struct {
	Offsets    map[string]int64 `json:"offsets"`
	StreamTime int64            `json:"stream_time_ms"`
}

// ErrCorrupt is wrapped by Open when the database cannot be used; the
// caller wipes it and restores fully from the changelog.
var ErrCorrupt = errors.New("state: database corrupt")

// DB is the state of one task: all its stores, key-prefixed, in one Pebble
// database, with the pending batch of the open transaction.
//
// A DB is used by one goroutine at a time.
type DB struct {
	pdb     *pebble.DB
	pending *pebble.Batch
	undo    []undo // writes of the current record, for Rollback
	cp      Checkpoint

	// restoring collects restored records: a plain batch, as a restore
	// reads nothing back and an index would only cost.
	restoring *pebble.Batch
	keyBuf    []byte

	// cache holds recently read and written values as of the pending
	// batch (nil: known absent), so that the read-modify-write of a hot key
	// does not go through Pebble's lookup twice per record. It is dropped
	// with the pending batch (Discard) and when it outgrows cacheSize.
	cache map[string][]byte
}

// cacheSize bounds the read cache of one task's DB, in entries.
const cacheSize = 1 << 14

type undo struct {
	key     []byte
	prev    []byte
	existed bool
}

// Options configures Open. The zero value uses the OS file system.
type Options struct {
	// FS is the file system; vfs.NewMem() for tests and streamtest.
	FS vfs.FS
}

// Open opens (creating if needed) the database in dir and reads its
// checkpoint. A corrupt database, or one whose checkpoint cannot be read,
// is reported with ErrCorrupt; other failures (the directory locked by
// another process, permissions) are not, so that nobody wipes a database
// that is merely in use.
func Open(dir string, opts Options) (*DB, error) {
	popts := &pebble.Options{FS: opts.FS, Logger: quietLogger{}}
	// Every store access is a point lookup, half of them (a key's first
	// aggregate) for keys that do not exist: bloom filters on every level
	// spare reading data blocks for those.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	pdb, err := pebble.Open(dir, popts)
	switch {
	case err != nil && pebble.IsCorruptionError(err):
		return nil, fmt.Errorf("%w: open %s: %v", ErrCorrupt, dir, err)
	case err != nil:
		// Not corruption (a lock held by another worker, permissions):
		// never wiped.
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	d := &DB{pdb: pdb}
	v, closer, err := pdb.Get(checkpointKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		d.cp = Checkpoint{Offsets: map[string]int64{}}
	case err != nil:
		pdb.Close()
		return nil, fmt.Errorf("%w: read checkpoint in %s: %v", ErrCorrupt, dir, err)
	default:
		err = json.Unmarshal(v, &d.cp)
		closer.Close()
		if err != nil {
			pdb.Close()
			return nil, fmt.Errorf("%w: checkpoint in %s: %v", ErrCorrupt, dir, err)
		}
		if d.cp.Offsets == nil {
			d.cp.Offsets = map[string]int64{}
		}
	}
	d.pending = pdb.NewIndexedBatch()
	return d, nil
}

// Checkpoint returns the applied checkpoint. The map must not be modified.
func (d *DB) Checkpoint() Checkpoint { return d.cp }

// Get returns the value of key as of the pending batch (the open
// transaction's own writes included). The returned slice is valid until
// the next call on the DB.
func (d *DB) Get(key []byte) ([]byte, bool, error) {
	if v, ok := d.cache[string(key)]; ok {
		return v, v != nil, nil
	}
	v, closer, err := d.pending.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		d.cached(key, nil)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get: %w", err)
	}
	defer closer.Close()
	v = bytes.Clone(v)
	if v == nil {
		v = []byte{}
	}
	d.cached(key, v)
	return v, true, nil
}

// cached records value (nil: absent) as key's current value.
func (d *DB) cached(key, value []byte) {
	if d.cache == nil || len(d.cache) >= cacheSize {
		d.cache = make(map[string][]byte)
	}
	d.cache[string(key)] = value
}

// Set writes key into the pending batch.
func (d *DB) Set(key, value []byte) error {
	if err := d.remember(key); err != nil {
		return err
	}
	if err := d.pending.Set(key, value, nil); err != nil {
		d.cache = nil
		return err
	}
	d.cached(key, append([]byte{}, value...))
	return nil
}

// Delete deletes key in the pending batch.
func (d *DB) Delete(key []byte) error {
	if err := d.remember(key); err != nil {
		return err
	}
	if err := d.pending.Delete(key, nil); err != nil {
		d.cache = nil
		return err
	}
	d.cached(key, nil)
	return nil
}

// remember records key's current value so that Rollback can restore it.
// After a Get of the same key (a read-modify-write) the value is cached.
func (d *DB) remember(key []byte) error {
	v, ok, err := d.Get(key)
	if err != nil {
		return err
	}
	d.undo = append(d.undo, undo{key: bytes.Clone(key), prev: v, existed: ok})
	return nil
}

// Mark starts a new input record: Rollback undoes the writes made since.
func (d *DB) Mark() { d.undo = d.undo[:0] }

// Rollback undoes the pending writes made since Mark: a failed record's
// state changes are discarded with its outputs.
func (d *DB) Rollback() error {
	d.cache = nil // rebuilt from the restored pending values
	for i := len(d.undo) - 1; i >= 0; i-- {
		u := d.undo[i]
		var err error
		if u.existed {
			err = d.pending.Set(u.key, u.prev, nil)
		} else {
			err = d.pending.Delete(u.key, nil)
		}
		if err != nil {
			return fmt.Errorf("state: rollback: %w", err)
		}
	}
	d.undo = d.undo[:0]
	return nil
}

// Commit applies the pending batch and cp in one atomic, synced Pebble
// batch, after the Kafka transaction that carried the changelog records
// committed.
func (d *DB) Commit(cp Checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("state: encode checkpoint: %w", err)
	}
	batch := d.pending
	if d.restoring != nil {
		if !d.pending.Empty() {
			return errors.New("state: commit: restored and processed writes in one batch")
		}
		batch = d.restoring
	}
	if err := batch.Set(checkpointKey, b, nil); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	// Synced, so that a crash loses at most the apply in progress: a Pebble
	// NoSync write may stay in the process's WAL buffer (up to a 32 KiB
	// block) and die with it. Correctness would not suffer (the checkpoint
	// travels with the data), only the length of the replay after a crash.
	if err := batch.Commit(pebble.Sync); err != nil {
		d.cache = nil
		return fmt.Errorf("state: commit: %w", err)
	}
	if batch == d.restoring {
		d.cache = nil // restored writes bypassed it
	}
	d.cp = cp
	cache := d.cache // the committed values are still current
	d.reset()
	d.cache = cache
	return nil
}

// Discard drops the pending batch: the transaction did not commit.
func (d *DB) Discard() { d.reset() }

func (d *DB) reset() {
	d.cache = nil
	d.pending.Close()
	d.pending = d.pdb.NewIndexedBatch()
	d.undo = d.undo[:0]
	if d.restoring != nil {
		d.restoring.Close()
		d.restoring = nil
	}
}

// Close discards the pending batch and closes the database.
func (d *DB) Close() error {
	d.reset()
	d.pending.Close()
	return d.pdb.Close()
}

// quietLogger drops Pebble's informational logs and keeps its fatal ones.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// GetApplied returns the value of key as applied to the database, ignoring
// the pending batch. Unlike every other method it is safe to call
// concurrently with ApplyRestored and Commit on another goroutine: it is
// how tasks read a global table that one goroutine keeps current.
func (d *DB) GetApplied(key []byte) ([]byte, bool, error) {
	v, closer, err := d.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get: %w", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}
