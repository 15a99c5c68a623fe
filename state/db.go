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
// them.
//
// A committed transaction's writes stay in memory (reads see them) until
// enough of them gathered: Options.MaxUnapplied keys, or FlushWrites
// writes. Then the writes of all those transactions go to the database in
// one batch, with the checkpoint of the last, each key once: a key
// updated by every transaction costs one Pebble write, not one per
// transaction. The apply runs in the background while the next
// transaction is processed; each apply waits for the previous one.
//
// # Durability
//
// The database has no write-ahead log: the changelog is the log, as in
// Kafka Streams. An applied batch lives in Pebble's memtable until a flush
// writes it to disk, and a flush writes whole memtables, oldest first, so
// what a crash leaves on disk is every batch up to some point, each with
// its checkpoint. Restoring replays the changelog from that checkpoint: a
// tail bounded by the flush policy (Options.FlushWrites, and the memtable
// size) whatever the size of the store. Committed writes held in memory
// are no less durable than applied ones that are not flushed yet: both
// come back from the changelog. Close applies and flushes everything, so
// a clean restart replays nothing.
//
// This package never begins, ends or aborts a Kafka transaction: the
// runtime (package txn) decides when to Commit or Discard.
package state

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// ErrCorrupt is wrapped by Open (and ReadCheckpoint) when the database or
// its checkpoint cannot be read; the caller wipes it and restores fully
// from the changelog. Other failures to open never wrap it.
var ErrCorrupt = errors.New("state: database corrupt")

// DB is the state of one task: all its stores, key-prefixed, in one Pebble
// database, with the pending writes of the open transaction.
//
// The DB keeps an entry per key it has read or written recently: its
// value as of the pending writes. A key written since the last commit, or
// committed but not yet applied to the database, always has one; other
// entries are a cache of the database, bounded by cacheSize. A read or a
// read-modify-write therefore costs one map lookup, and Pebble only for a
// key not seen recently. The keys of a Segmented store have no entry: the
// store holds its writes itself (see segWrites), and the DB applies them
// with its own.
//
// # Concurrency
//
// A DB is used by one goroutine at a time: GetApplied is the only method
// that may run concurrently with others. The DB's own goroutine (the
// background apply) touches only what the apply was handed, and every
// method that must see its result waits for it.
type DB struct {
	pdb *pebble.DB
	cp  Checkpoint // of the last commit, applied or not

	entries map[string]*entry
	limit   int    // entries at which evict runs
	drops   uint64 // counts the times entries left the map (evict, clear)
	peak    int    // the most entries the map has held since it was made
	// dirty lists the entries written in the open transaction (and some
	// no longer), each with its committed value, which Discard restores.
	dirty  []dirtied
	undo   []undo // writes of the current record, for Rollback
	writes int    // writes of the open transaction

	// Commits are numbered. gen is the last one; handed the last one
	// whose writes were handed to an apply; applied the last one known
	// written to the database. An entry is unapplied (and must not be
	// evicted: the database may not have it) when the commit that last
	// wrote it is after applied.
	gen, handed, applied uint32
	// queued lists the entries committed after handed, which the next
	// apply writes; it is handed over when it reaches maxQueued
	// (Options.MaxUnapplied).
	queued      []*entry
	spareQueued []*entry // a queued list an apply handed back
	maxQueued   int
	// clean lists the entries that may only cache the database (read
	// from it, applied, or back to their committed value), which evict
	// drops.
	clean     cleanList
	evictions uint64 // evict's runs that kept entries
	// sinceFlush counts the writes committed since the last apply that
	// flushed (a key written twice counts twice: the restore after a
	// crash replays both).
	sinceFlush int
	// inputSinceFlush counts the input offsets the checkpoints advanced
	// since the last apply that flushed (Checkpoint.Input).
	inputSinceFlush int
	apply           *applyRun // the apply of commit handed, until reaped
	// failed is the error of an apply that failed: the database misses a
	// committed transaction's writes, and no later one may be applied
	// over that hole.
	failed   error
	reported bool   // failed was returned by CommitAsync
	lost     bool   // the entries that held what failed to apply are gone
	lookups  uint64 // reads that went to Pebble (tests)
	spare    []kv   // a buffer for the next apply

	// restoring collects restored records: a plain batch, as a restore
	// reads nothing back and an index would only cost.
	restoring *pebble.Batch
	keyBuf    []byte

	// view is an indexed batch holding every write the database does not
	// have yet, for iterators; nil until an iterator needs it, and dropped
	// when an apply starts (and at Discard). viewLag lists the entries
	// written since it was last brought up to date.
	view    *pebble.Batch
	viewLag []*entry

	applyHook func() error // tests: runs in apply's goroutine before the write

	listeners []listener // stores told of commits, discards and rollbacks
	holders   []holder   // stores that hold their writes themselves

	flushWrites int // Options.FlushWrites
}

// Open opens (creating if needed) the database in dir and reads its
// checkpoint. A corrupt database, or one whose checkpoint cannot be read,
// is reported with ErrCorrupt; other failures (invalid options, the
// directory locked by another process, permissions) are not, so that
// nobody wipes a database that is merely in use.
func Open(dir string, opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.EnsureDefaults()
	if markedCorrupt(opts.FS, dir) {
		return nil, fmt.Errorf("%w: %s was found damaged while in use (%s)", ErrCorrupt, dir, corruptMarker)
	}
	pdb, err := openPebble(dir, opts.pebbleOptions(dir))
	if err != nil {
		return nil, err
	}
	cp, err := readCheckpoint(pdb, dir)
	if err != nil {
		pdb.Close()
		return nil, err
	}
	return &DB{pdb: pdb, cp: cp, entries: map[string]*entry{}, limit: cacheSize,
		flushWrites: opts.FlushWrites, maxQueued: opts.MaxUnapplied}, nil
}

// openPebble opens the Pebble database in dir, reporting damage with
// ErrCorrupt (openError).
func openPebble(dir string, popts *pebble.Options) (pdb *pebble.DB, err error) {
	defer func() {
		// Pebble reports some damage it finds while opening through
		// its logger's Fatalf.
		if p := recover(); p != nil {
			cp, ok := p.(*CorruptionPanic)
			if !ok {
				panic(p)
			}
			pdb, err = nil, fmt.Errorf("%w: open %s: %s", ErrCorrupt, dir, cp.Msg)
		}
	}()
	if pdb, err = pebble.Open(dir, popts); err != nil {
		return nil, openError(dir, err)
	}
	return pdb, nil
}

// Checkpoint returns the checkpoint of the last Commit or CommitAsync (or
// of Open), applied or not. Its maps must not be modified.
func (d *DB) Checkpoint() Checkpoint { return d.cp }

// Get returns the value of key as of the pending writes (the open
// transaction's own writes included), and whether key exists. The
// returned slice must not be modified. It fails if the database cannot be
// read, and after a failed apply whose entries Discard dropped.
func (d *DB) Get(key []byte) ([]byte, bool, error) {
	e, err := d.entry(key)
	if err != nil {
		return nil, false, err
	}
	return e.value, e.value != nil, nil
}

// getDirect returns the value of key in Pebble, for a key that never has
// an entry (a holder's): what the database has is its value as of every
// write but the holder's own.
func (d *DB) getDirect(key []byte) ([]byte, bool, error) {
	d.lookups++
	v, closer, err := d.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get: %w", err)
	}
	defer closer.Close()
	return append(make([]byte, 0, len(v)), v...), true, nil
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

// Close discards the pending writes, applies every commit, flushes what
// is applied to disk (so that a restart replays nothing), and closes the
// database. It returns a failed apply that CommitAsync has not reported,
// and a failed flush; the database is closed either way. The DB must not
// be used after.
func (d *DB) Close() error {
	var applyErr error
	if err := d.wait(); err != nil && !d.reported {
		applyErr = err
	}
	_ = d.Discard() // a failed apply is handled above
	if d.failed == nil {
		applyErr = d.applyAll()
	}
	// After a failed apply the memtable still holds a prefix of the
	// committed batches: flushing it is as safe as ever.
	var flushErr error
	if err := d.pdb.Flush(); err != nil {
		flushErr = fmt.Errorf("state: flush: %w", err)
	}
	return errors.Join(applyErr, flushErr, d.pdb.Close())
}
