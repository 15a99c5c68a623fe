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
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
// the offset from which a restore must replay; the task's stream time;
// and, for each source topic, the offset after the last input record that
// stream time covers.
type Checkpoint struct {
	Offsets    map[string]int64 `json:"offsets"`
	StreamTime int64            `json:"stream_time_ms"`
	// Input is empty in a checkpoint of a full restore: which input the
	// restored state covers is not known then.
	Input map[string]int64 `json:"input,omitempty"`
}

// inputSince returns how many input offsets cp covers past prev's: a
// restart reads them back (to restore the stream time), so FlushWrites
// bounds them as it bounds the writes a restart replays.
func inputSince(prev, cp Checkpoint) int {
	var n int64
	for topic, off := range cp.Input {
		if from, ok := prev.Input[topic]; ok && off > from {
			n += off - from
		}
	}
	return int(min(n, math.MaxInt32))
}

// ErrCorrupt is wrapped by Open when the database cannot be used; the
// caller wipes it and restores fully from the changelog.
var ErrCorrupt = errors.New("state: database corrupt")

// DB is the state of one task: all its stores, key-prefixed, in one Pebble
// database, with the pending writes of the open transaction.
//
// The DB keeps an entry per key it has read or written recently: its
// value as of the pending writes. A key written since the last commit, or
// committed but not yet applied to the database, always has one; other
// entries are a cache of the database, bounded by cacheSize. A read or a
// read-modify-write therefore costs one map lookup, and Pebble only for a
// key not seen recently.
//
// A DB is used by one goroutine at a time.
type DB struct {
	pdb *pebble.DB
	cp  Checkpoint // of the last commit, applied or not

	entries map[string]*entry
	limit   int    // entries at which evict runs
	drops   uint64 // counts the times entries left the map (evict, clear)
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
	queued    []*entry
	maxQueued int
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
	reported bool // failed was returned by CommitAsync
	lost     bool // the entries that held what failed to apply are gone
	spare    []kv // a buffer for the next apply

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

	flushWrites int // Options.FlushWrites
}

// cacheSize bounds the entries of one task's DB, unless more of them are
// pending or unapplied.
const cacheSize = 1 << 14

// entry is the state of one key: 48 bytes, as there may be many.
type entry struct {
	key   string
	value []byte // as of the pending writes; nil: absent. Never modified.
	gen   uint32 // the commit that last wrote it; 0: none since loaded
	dirty bool   // written in the open transaction
}

// unapplied reports whether e holds a committed write that the database
// may not have yet.
func (d *DB) unapplied(e *entry) bool { return e.gen > d.applied }

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

// kv is one write, as apply sorts them. The entry's key never changes, so
// apply may read it while the entry is in use.
type kv struct {
	e     *entry
	value []byte
}

// maxSpare bounds the capacity of the buffer of writes kept for the next
// apply: a larger one is dropped.
const maxSpare = 2 * DefaultMaxUnapplied

// applyRun is one background apply.
type applyRun struct {
	gen  uint32
	done chan struct{}
	// Set before done is closed.
	err    error
	writes []kv
}

// Options configures Open. The zero value uses the OS file system and
// the default flush policy.
type Options struct {
	// FS is the file system; vfs.NewMem() for tests and streamtest.
	FS vfs.FS
	// FlushWrites is how many committed writes (store writes and
	// restored records) the database holds in memory at most before it
	// applies them and flushes them to disk in the background. A crash
	// loses what is not flushed, and the restart replays it from the
	// changelog: about FlushWrites records per task, plus the transaction
	// being applied. FlushWrites input offsets (Checkpoint.Input) since
	// the last flush also call for one: the restart reads that input back
	// too. A flush also happens when Pebble's 4 MiB memtable fills.
	// Default 100,000.
	FlushWrites int
	// MaxUnapplied is how many keys committed transactions may have
	// written before their writes are applied to the database, in one
	// batch that writes each key once. Their values are held in memory
	// meanwhile, as the DB's cache holds read ones. Default 16,384; 1
	// applies every commit on its own.
	MaxUnapplied int
}

// DefaultFlushWrites is the default of Options.FlushWrites.
const DefaultFlushWrites = 100_000

// DefaultMaxUnapplied is the default of Options.MaxUnapplied.
const DefaultMaxUnapplied = 1 << 14

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
	// A task's database is small, so Pebble compacts L0 straight into its
	// last level, rewriting the overlapping part of the whole database;
	// with keys spread over the key space, all of it. Letting 8 flushed
	// files gather in L0 (Pebble's default: 4) makes those rewrites rarer.
	// It matters most at a restart: Pebble's Open waits for any compaction
	// that flushing the recovered memtable starts. A crashed 625k-key task
	// database took 180-530 ms to open at 4, where that flush started a
	// compaction, and 14 ms at 8, where it did not.
	popts.L0CompactionThreshold = 8
	popts.L0StopWritesThreshold = 24
	// No write-ahead log (see Durability in the package doc): an apply is
	// a memtable insert, and Open never flushes a recovered log (which
	// made Open wait for the compaction that flush started, a restart
	// delay that grew with the database).
	popts.DisableWAL = true
	pdb, err := pebble.Open(dir, popts)
	switch {
	case err != nil && pebble.IsCorruptionError(err):
		return nil, fmt.Errorf("%w: open %s: %v", ErrCorrupt, dir, err)
	case err != nil:
		// Not corruption (a lock held by another worker, permissions):
		// never wiped.
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	d := &DB{pdb: pdb, entries: map[string]*entry{}, limit: cacheSize,
		flushWrites: opts.FlushWrites, maxQueued: opts.MaxUnapplied}
	if d.flushWrites <= 0 {
		d.flushWrites = DefaultFlushWrites
	}
	if d.maxQueued <= 0 {
		d.maxQueued = DefaultMaxUnapplied
	}
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
// modified.
func (d *DB) Get(key []byte) ([]byte, bool, error) {
	e, err := d.entry(key)
	if err != nil {
		return nil, false, err
	}
	return e.value, e.value != nil, nil
}

// entry returns key's entry, loading it from the database if needed.
func (d *DB) entry(key []byte) (*entry, error) {
	if e := d.entries[string(key)]; e != nil {
		return e, nil
	}
	if d.lost {
		return nil, d.failed
	}
	// No entry: the database has the key's current value.
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
	if len(d.entries) >= d.limit {
		d.evict()
	}
	e := &entry{key: string(key), value: v}
	d.entries[e.key] = e
	return e, nil
}

// evict drops the entries that only cache the database. The others move
// to a new map: a Go map never shrinks, and a large transaction's writes
// would otherwise keep its table at their size.
func (d *DB) evict() {
	d.reap()
	keep := 0
	for _, e := range d.entries {
		if e.dirty || d.unapplied(e) {
			keep++
		}
	}
	old := d.entries
	d.drops++
	d.entries = make(map[string]*entry, keep+cacheSize/4)
	for k, e := range old {
		if e.dirty || d.unapplied(e) {
			d.entries[k] = e
		}
	}
	// The entries that stay (pending, unapplied) count towards cacheSize;
	// a quarter of it is always left, so that evict runs at most once per
	// cacheSize/4 new entries.
	d.limit = max(cacheSize, len(d.entries)+cacheSize/4)
}

// Set writes key into the pending writes.
func (d *DB) Set(key, value []byte) error {
	return d.write(key, append(make([]byte, 0, len(value)), value...))
}

// Delete deletes key in the pending writes.
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
	if d.view != nil {
		d.viewLag = append(d.viewLag, e)
	}
}

// Mark starts a new input record: Rollback undoes the writes made since.
func (d *DB) Mark() { d.undo = d.undo[:0] }

// Rollback undoes the pending writes made since Mark: a failed record's
// state changes are discarded with its outputs.
func (d *DB) Rollback() error {
	for i := len(d.undo) - 1; i >= 0; i-- {
		u := d.undo[i]
		u.e.value, u.e.dirty = u.value, u.dirty
		if d.view != nil {
			d.viewLag = append(d.viewLag, u.e)
		}
	}
	d.writes -= len(d.undo)
	clear(d.undo)
	d.undo = d.undo[:0]
	return nil
}

// newIter returns a Pebble iterator over the database as of the pending
// writes.
func (d *DB) newIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	if d.view == nil {
		d.view = d.pdb.NewIndexedBatch()
		d.viewLag = d.viewLag[:0]
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
	clear(d.viewLag)
	d.viewLag = d.viewLag[:0]
	return d.view.NewIter(o)
}

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

func (d *DB) dropView() {
	if d.view != nil {
		d.view.Close()
		d.view = nil
	}
	clear(d.viewLag)
	d.viewLag = d.viewLag[:0]
}

// Commit commits the pending writes with the checkpoint cp, as
// CommitAsync does, and returns once they and every earlier commit's are
// applied (durable after the next flush: see Durability in the package
// doc).
func (d *DB) Commit(cp Checkpoint) error {
	if err := d.CommitAsync(cp); err != nil {
		return err
	}
	return d.applyAll()
}

// CommitAsync commits the pending writes with the checkpoint cp; call it
// after the Kafka transaction that carried their changelog records
// committed. Reads see the committed writes at once, and the next
// transaction's writes can begin. The database gets them later, in the
// background: once the commits not applied yet have written
// Options.MaxUnapplied keys, or FlushWrites writes were committed since
// the last flush (or at Commit and Close), their writes go to Pebble in
// one atomic batch with the checkpoint of the last of them. An apply
// first waits for the previous one: a Pebble batch never lands before an
// earlier one, so the database's checkpoint never claims changelog
// offsets whose writes it lacks. After an apply failed, every later
// CommitAsync fails too (the database misses committed writes): the
// caller must close the DB and restore from the checkpoint that was last
// applied.
//
// Restored records (ApplyRestored) are applied before CommitAsync
// returns.
func (d *DB) CommitAsync(cp Checkpoint) error {
	d.reap()
	if d.failed != nil {
		d.reported = true
		return d.failed
	}
	if d.restoring != nil {
		return d.commitRestored(cp)
	}
	d.gen++
	for _, w := range d.dirty {
		if e := w.e; e.dirty {
			if e.gen <= d.handed { // not queued since the last hand-over
				d.queued = append(d.queued, e)
			}
			e.dirty, e.gen = false, d.gen
		}
	}
	clear(d.dirty)
	d.dirty = d.dirty[:0]
	clear(d.undo)
	d.undo = d.undo[:0]
	d.sinceFlush += d.writes
	d.inputSinceFlush += inputSince(d.cp, cp)
	d.writes = 0
	d.cp = cp
	switch {
	case d.gen == math.MaxUint32:
		// The numbering starts over before it wraps.
		if err := d.applyAll(); err != nil {
			return err
		}
		for _, e := range d.entries {
			e.gen = 0
		}
		d.gen, d.handed, d.applied = 0, 0, 0
	case len(d.queued) >= d.maxQueued || d.sinceFlush >= d.flushWrites || d.inputSinceFlush >= d.flushWrites:
		return d.handOver()
	}
	return nil
}

// applyAll hands every commit not handed over yet to an apply, and waits
// until all are applied. There must be no pending writes.
func (d *DB) applyAll() error {
	if d.gen != d.handed {
		if err := d.handOver(); err != nil {
			return err
		}
	}
	return d.wait()
}

// handOver starts the apply of the queued writes, with the checkpoint of
// the last commit, once the previous apply is done; it flushes after it
// when FlushWrites writes were committed since the last flush. There
// must be no pending writes: the queued entries' values are committed
// ones.
func (d *DB) handOver() error {
	if err := d.wait(); err != nil {
		d.reported = true
		return err
	}
	b, err := json.Marshal(d.cp)
	if err != nil {
		return fmt.Errorf("state: encode checkpoint: %w", err)
	}
	writes := d.spare[:0]
	d.spare = nil
	for _, e := range d.queued {
		writes = append(writes, kv{e, e.value})
	}
	clear(d.queued)
	d.queued = d.queued[:0]
	flush := d.flushDue(0)
	d.handed = d.gen
	// The view holds every key written since it was built: rebuilding it
	// from what is unapplied now keeps it small.
	d.dropView()
	run := &applyRun{gen: d.gen, done: make(chan struct{})}
	d.apply = run
	hook := d.applyHook
	go func() {
		defer close(run.done)
		run.writes, run.err = d.write1(writes, b, hook, flush)
	}()
	return nil
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
		b, err = json.Marshal(cp)
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
	return nil
}

// write1 writes the writes of one apply and the checkpoint cp in one
// Pebble batch, in key order, which makes Pebble's memtable inserts
// cheaper, and starts a flush after it if asked to. It runs on apply's
// goroutine, and returns writes for reuse.
func (d *DB) write1(writes []kv, cp []byte, hook func() error, flush bool) ([]kv, error) {
	defer clear(writes) // no references to values
	if hook != nil {
		if err := hook(); err != nil {
			return writes, fmt.Errorf("state: commit: %w", err)
		}
	}
	size := len(checkpointKey) + len(cp) + 16
	for _, w := range writes {
		size += len(w.e.key) + len(w.value) + 16
	}
	slices.SortFunc(writes, func(a, b kv) int { return strings.Compare(a.e.key, b.e.key) })
	batch := d.pdb.NewBatchWithSize(size)
	defer batch.Close()
	err := batch.Set(checkpointKey, cp, nil)
	for i := 0; i < len(writes) && err == nil; i++ {
		if w := writes[i]; w.value == nil {
			err = batch.Delete([]byte(w.e.key), nil)
		} else {
			err = batch.Set([]byte(w.e.key), w.value, nil)
		}
	}
	if err == nil {
		// There is no log to sync: the batch is durable once a flush
		// wrote its memtable (see Durability in the package doc).
		err = batch.Commit(pebble.NoSync)
	}
	if err != nil {
		return writes, fmt.Errorf("state: commit: %w", err)
	}
	if flush {
		d.asyncFlush()
	}
	return writes, nil
}

// flushDue counts n more committed writes, and reports whether
// FlushWrites of them, or of input offsets, have gathered since the last
// flush; if so the counts start over, and the caller flushes after what
// it applies.
func (d *DB) flushDue(n int) bool {
	if d.sinceFlush += n; d.sinceFlush < d.flushWrites && d.inputSinceFlush < d.flushWrites {
		return false
	}
	d.sinceFlush, d.inputSinceFlush = 0, 0
	return true
}

// asyncFlush starts a flush of what is applied. Pebble flushes memtables
// in order, each whole, so the disk always holds a prefix of the applied
// batches, checkpoints included.
func (d *DB) asyncFlush() {
	// The only error is a closed database, which Close never leaves
	// behind an apply; a flush that does not happen only lengthens the
	// replay after a crash.
	_, _ = d.pdb.AsyncFlush()
}

// wait waits until the apply in progress, if any, is done, and returns
// the error of a failed apply.
func (d *DB) wait() error {
	if d.apply != nil {
		<-d.apply.done
		d.reap()
	}
	return d.failed
}

// reap takes the result of a finished apply.
func (d *DB) reap() {
	r := d.apply
	if r == nil {
		return
	}
	select {
	case <-r.done:
	default:
		return
	}
	d.apply = nil
	if cap(r.writes) <= maxSpare {
		d.spare = r.writes[:0]
	}
	if r.err != nil {
		if d.failed == nil {
			d.failed = r.err
		}
		return
	}
	d.applied = r.gen
}

// Discard drops the pending writes: the transaction did not commit.
// Reads see the committed writes again, applied or not. If an apply
// failed, the database misses committed writes, and the DB must be
// closed and restored: every later read fails too.
func (d *DB) Discard() {
	for _, w := range d.dirty {
		if w.e.dirty {
			w.e.value, w.e.dirty = w.committed, false
		}
	}
	clear(d.dirty)
	d.dirty = d.dirty[:0]
	clear(d.undo)
	d.undo = d.undo[:0]
	d.writes = 0
	d.dropView()
	if d.restoring != nil {
		d.restoring.Close()
		d.restoring = nil
	}
	if d.wait() != nil {
		d.lost = true
		clear(d.entries)
		d.drops++
	}
}

// Flush applies every commit and starts writing what is applied to disk;
// done is closed once it is there. A restore that replayed a changelog
// tail calls it at its end, so that a crash soon after does not replay
// the same tail again (restarts under repeated kills would otherwise
// replay ever more, up to FlushWrites a task). There must be no pending
// writes. An error is that of a failed apply, or of a closed database.
func (d *DB) Flush() (done <-chan struct{}, err error) {
	if err := d.applyAll(); err != nil {
		return nil, err
	}
	d.sinceFlush, d.inputSinceFlush = 0, 0
	flushed, err := d.pdb.AsyncFlush()
	if err != nil {
		return nil, fmt.Errorf("state: flush: %w", err)
	}
	return flushed, nil
}

// Close discards the pending writes, applies every commit, flushes what
// is applied to disk (so that a restart replays nothing), and closes the
// database. It returns a failed apply that CommitAsync has not reported,
// and a failed flush.
func (d *DB) Close() error {
	var applyErr error
	if err := d.wait(); err != nil && !d.reported {
		applyErr = err
	}
	d.Discard()
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
