// Package state keeps a task's state in a local Pebble database whose
// every change is also written, inside the same Kafka transaction as the
// task's outputs, to a compacted changelog topic.
//
// # Atomic commit
//
// Writes of the open transaction are kept pending (reads see them). They
// reach the database only after the Kafka transaction committed, in ONE
// Pebble batch together with the checkpoint: the next changelog offset of
// every store, and the task's stream time. Any other outcome discards
// them. The apply runs in the background while the next transaction is
// processed (reads see the committed writes meanwhile); each apply waits
// for the previous one. A crash between the Kafka
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
	"slices"
	"strings"

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
// database, with the pending writes of the open transaction.
//
// Reads see, newest first: the pending writes, the writes of the last
// committed transaction while a background goroutine applies them, and
// the database.
//
// A DB is used by one goroutine at a time.
type DB struct {
	pdb *pebble.DB
	cp  Checkpoint // of the last Commit, applied or being applied

	// pending holds the open transaction's writes: the last value of each
	// key written, nil for a delete. Keeping only the last value (not a
	// Pebble indexed batch of every write) spares an ordered insert per
	// write, and applies each key once per transaction.
	pending map[string][]byte
	// applying holds the writes of the last committed transaction, which
	// apply writes to the database in the background; nil when there are
	// none. It is not modified until apply is done.
	applying map[string][]byte
	apply    *applyRun
	// failed is the error of an apply that failed: the database misses a
	// committed transaction's writes, and no later one may be applied
	// over that hole.
	failed error
	spare  map[string][]byte // an emptied map for the next pending
	sorted []kv              // apply's buffer, owned by the apply running

	undo []undo // writes of the current record, for Rollback

	// restoring collects restored records: a plain batch, as a restore
	// reads nothing back and an index would only cost.
	restoring *pebble.Batch
	keyBuf    []byte

	// cache holds recently read and written values as of the pending
	// writes (nil: known absent), so that the read-modify-write of a hot
	// key does not go through Pebble's lookup twice per record. It is
	// dropped with the pending writes (Discard) and when it outgrows
	// cacheSize.
	cache map[string][]byte

	// view is an indexed batch holding applying and pending, for
	// iterators; nil until an iterator needs it, and dropped at every
	// commit. viewLag lists the keys written since it was last brought up
	// to date.
	view    *pebble.Batch
	viewLag []string

	applyHook func() error // tests: runs in apply's goroutine before the write
}

// cacheSize bounds the read cache of one task's DB, in entries.
const cacheSize = 1 << 14

// undo is how to undo one write: the key's value before it, and whether
// the key had a pending write then.
type undo struct {
	key       string
	prev      []byte
	existed   bool
	inPending bool
}

// kv is one write, as apply sorts them.
type kv struct {
	key   string
	value []byte
}

// applyRun is one background apply.
type applyRun struct {
	done chan struct{}
	err  error // set before done is closed
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
	d := &DB{pdb: pdb, pending: map[string][]byte{}}
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
	return d, nil
}

// Checkpoint returns the checkpoint of the last Commit (or of Open). The
// map must not be modified.
func (d *DB) Checkpoint() Checkpoint { return d.cp }

// Get returns the value of key as of the pending writes (the open
// transaction's own writes included). The returned slice must not be
// modified; it is valid until the next call on the DB.
func (d *DB) Get(key []byte) ([]byte, bool, error) {
	if v, ok := d.cache[string(key)]; ok {
		return v, v != nil, nil
	}
	if v, ok := d.pending[string(key)]; ok {
		d.cached(string(key), v)
		return v, v != nil, nil
	}
	v, ok, err := d.committed(key)
	if err != nil {
		return nil, false, err
	}
	d.cached(string(key), v)
	return v, ok, nil
}

// committed returns the value of key as of the last Commit: the writes
// being applied, then the database.
func (d *DB) committed(key []byte) ([]byte, bool, error) {
	if v, ok := d.applying[string(key)]; ok {
		return v, v != nil, nil
	}
	v, closer, err := d.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
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
	return v, true, nil
}

// cached records value (nil: absent) as key's current value.
func (d *DB) cached(key string, value []byte) {
	if d.cache == nil || len(d.cache) >= cacheSize {
		d.cache = make(map[string][]byte)
	}
	d.cache[key] = value
}

// Set writes key into the pending writes.
func (d *DB) Set(key, value []byte) error {
	if value == nil {
		return d.write(key, []byte{})
	}
	return d.write(key, bytes.Clone(value))
}

// Delete deletes key in the pending writes.
func (d *DB) Delete(key []byte) error { return d.write(key, nil) }

// write makes value (nil: a delete) key's pending value, and records the
// previous one so that Rollback can restore it. After a Get of the same
// key (a read-modify-write) the previous value is cached.
func (d *DB) write(key, value []byte) error {
	prev, existed, err := d.Get(key)
	if err != nil {
		return err
	}
	k := string(key)
	_, inPending := d.pending[k]
	d.undo = append(d.undo, undo{key: k, prev: prev, existed: existed, inPending: inPending})
	d.pending[k] = value
	d.cached(k, value)
	if d.view != nil {
		d.viewLag = append(d.viewLag, k)
	}
	return nil
}

// Mark starts a new input record: Rollback undoes the writes made since.
func (d *DB) Mark() { d.undo = d.undo[:0] }

// Rollback undoes the pending writes made since Mark: a failed record's
// state changes are discarded with its outputs.
func (d *DB) Rollback() error {
	for i := len(d.undo) - 1; i >= 0; i-- {
		u := d.undo[i]
		prev := u.prev
		if !u.existed {
			prev = nil
		}
		if u.inPending {
			d.pending[u.key] = prev
		} else {
			delete(d.pending, u.key)
		}
		d.cached(u.key, prev)
		if d.view != nil {
			d.viewLag = append(d.viewLag, u.key)
		}
	}
	d.undo = d.undo[:0]
	return nil
}

// newIter returns a Pebble iterator over the database as of the pending
// writes.
func (d *DB) newIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	if d.view == nil {
		d.view = d.pdb.NewIndexedBatch()
		d.viewLag = d.viewLag[:0]
		for k, v := range d.applying {
			if err := d.viewSet(k, v); err != nil {
				return nil, err
			}
		}
		for k, v := range d.pending {
			if err := d.viewSet(k, v); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range d.viewLag {
		v, ok := d.pending[k]
		if !ok {
			var err error
			if v, ok, err = d.committed([]byte(k)); err != nil {
				return nil, err
			}
			if !ok {
				v = nil
			}
		}
		if err := d.viewSet(k, v); err != nil {
			return nil, err
		}
	}
	d.viewLag = d.viewLag[:0]
	return d.view.NewIter(o)
}

func (d *DB) viewSet(k string, v []byte) error {
	var err error
	if v == nil {
		err = d.view.Delete([]byte(k), nil)
	} else {
		err = d.view.Set([]byte(k), v, nil)
	}
	if err != nil {
		d.dropView()
		return fmt.Errorf("state: iterate: %w", err)
	}
	return nil
}

func (d *DB) dropView() {
	if d.view != nil {
		d.view.Close()
		d.view = nil
	}
	d.viewLag = d.viewLag[:0]
}

// Commit applies the pending writes and cp in one atomic, synced Pebble
// batch, after the Kafka transaction that carried the changelog records
// committed, and returns when they are durable. It is CommitAsync
// followed by Wait.
func (d *DB) Commit(cp Checkpoint) error {
	if err := d.CommitAsync(cp); err != nil {
		return err
	}
	return d.Wait()
}

// CommitAsync hands the pending writes and cp to a background goroutine
// that applies them in one atomic, synced Pebble batch; call it after the
// Kafka transaction that carried the changelog records committed. Reads
// see the committed writes at once, and the next transaction's writes
// can begin. It first waits for the previous apply: a Pebble batch never
// lands before an earlier one, so the database's checkpoint never claims
// changelog offsets whose writes it lacks. After an apply failed, every
// later CommitAsync fails too (the database misses committed writes):
// the caller must close the DB and restore from the checkpoint that was
// last applied.
//
// Restored records (ApplyRestored) are applied before CommitAsync
// returns.
func (d *DB) CommitAsync(cp Checkpoint) error {
	if err := d.Wait(); err != nil {
		return err
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("state: encode checkpoint: %w", err)
	}
	if d.restoring != nil {
		if len(d.pending) > 0 {
			return errors.New("state: commit: restored and processed writes in one batch")
		}
		err := d.restoring.Set(checkpointKey, b, nil)
		if err == nil {
			err = d.restoring.Commit(pebble.Sync)
		}
		d.restoring.Close()
		d.restoring = nil
		d.cache = nil // restored writes bypassed it
		d.dropView()
		if err != nil {
			d.failed = fmt.Errorf("state: commit: %w", err)
			return d.failed
		}
		d.cp = cp
		return nil
	}
	// The last apply is done: its writes are in the database, and its map
	// can hold the next transaction's.
	if d.applying != nil {
		clear(d.applying)
		d.spare, d.applying = d.applying, nil
	}
	d.applying, d.pending = d.pending, d.spare
	if d.pending == nil {
		d.pending = map[string][]byte{}
	}
	d.spare = nil
	d.undo = d.undo[:0]
	d.dropView()
	d.cp = cp // the cache holds the committed values, still current
	run := &applyRun{done: make(chan struct{})}
	d.apply = run
	writes, sorted, hook := d.applying, d.sorted, d.applyHook
	d.sorted = nil
	go func() {
		defer close(run.done)
		sorted, run.err = d.write1(writes, b, sorted, hook)
		d.sorted = sorted // read by the DB's goroutine only after done
	}()
	return nil
}

// write1 writes the writes of one transaction and the checkpoint cp in one
// synced Pebble batch, in key order, which makes Pebble's memtable inserts
// cheaper. It runs on apply's goroutine.
func (d *DB) write1(writes map[string][]byte, cp []byte, sorted []kv, hook func() error) ([]kv, error) {
	if hook != nil {
		if err := hook(); err != nil {
			return sorted, fmt.Errorf("state: commit: %w", err)
		}
	}
	sorted = sorted[:0]
	size := len(checkpointKey) + len(cp) + 16
	for k, v := range writes {
		sorted = append(sorted, kv{k, v})
		size += len(k) + len(v) + 16
	}
	slices.SortFunc(sorted, func(a, b kv) int { return strings.Compare(a.key, b.key) })
	batch := d.pdb.NewBatchWithSize(size)
	defer batch.Close()
	err := batch.Set(checkpointKey, cp, nil)
	for i := 0; i < len(sorted) && err == nil; i++ {
		if w := sorted[i]; w.value == nil {
			err = batch.Delete([]byte(w.key), nil)
		} else {
			err = batch.Set([]byte(w.key), w.value, nil)
		}
	}
	clear(sorted) // no references into writes
	if err == nil {
		// Synced, so that a crash loses at most the apply in progress: a
		// Pebble NoSync write may stay in the process's WAL buffer (up to
		// a 32 KiB block) and die with it. Correctness would not suffer
		// (the checkpoint travels with the data), only the length of the
		// replay after a crash.
		err = batch.Commit(pebble.Sync)
	}
	if err != nil {
		return sorted, fmt.Errorf("state: commit: %w", err)
	}
	return sorted, nil
}

// Wait waits until the writes handed to CommitAsync are applied, and
// returns the error of a failed apply.
func (d *DB) Wait() error {
	if d.apply != nil {
		<-d.apply.done
		if err := d.apply.err; err != nil && d.failed == nil {
			d.failed = err
		}
		d.apply = nil
	}
	return d.failed
}

// Discard drops the pending writes: the transaction did not commit. The
// writes of the last Commit are kept.
func (d *DB) Discard() {
	clear(d.pending)
	d.cache = nil
	d.undo = d.undo[:0]
	d.dropView()
	if d.restoring != nil {
		d.restoring.Close()
		d.restoring = nil
	}
}

// Close discards the pending writes, waits for the apply of the last
// Commit, and closes the database. It returns a failure of that apply
// that CommitAsync has not reported yet.
func (d *DB) Close() error {
	var applyErr error
	if d.apply != nil {
		applyErr = d.Wait()
	}
	d.Discard()
	return errors.Join(applyErr, d.pdb.Close())
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
