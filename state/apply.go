package state

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

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
	// entries are the entries whose values it writes: once it is
	// applied, they only cache the database, unless written again.
	entries []*entry
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
			e.dirty, e.gen, e.blind = false, d.gen, false
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
	for _, l := range d.listeners {
		l.committed()
	}
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
	case d.heldKeys() >= d.maxQueued || d.sinceFlush >= d.flushWrites || d.inputSinceFlush >= d.flushWrites:
		return d.handOver()
	}
	return nil
}

// heldKeys returns how many keys the commits not handed to an apply
// wrote.
func (d *DB) heldKeys() int {
	n := len(d.queued)
	for _, h := range d.holders {
		n += h.held()
	}
	return n
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
	b, err := d.cp.encode()
	if err != nil {
		return fmt.Errorf("state: encode checkpoint: %w", err)
	}
	writes := d.spare[:0]
	d.spare = nil
	for _, e := range d.queued {
		writes = append(writes, kv{e, e.value})
	}
	var held []func(*pebble.Batch) error
	for _, h := range d.holders {
		if f := h.hand(); f != nil {
			held = append(held, f)
		}
	}
	entries := d.queued
	d.queued = d.spareQueued[:0]
	d.spareQueued = nil
	flush := d.flushDue(0)
	d.handed = d.gen
	// The view holds every key written since it was built: rebuilding it
	// from what is unapplied now keeps it small.
	d.dropView()
	run := &applyRun{gen: d.gen, done: make(chan struct{}), entries: entries}
	d.apply = run
	hook := d.applyHook
	go func() {
		defer close(run.done)
		run.writes, run.err = d.write1(writes, held, b, hook, flush)
	}()
	return nil
}

// write1 writes the writes of one apply and the checkpoint cp in one
// Pebble batch, in key order, which makes Pebble's memtable inserts
// cheaper, and starts a flush after it if asked to. It runs on apply's
// goroutine, and returns writes for reuse.
func (d *DB) write1(writes []kv, held []func(*pebble.Batch) error, cp []byte, hook func() error, flush bool) ([]kv, error) {
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
	for i := 0; i < len(held) && err == nil; i++ {
		err = held[i](batch)
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
	for _, h := range d.holders {
		h.handedApplied()
	}
	// The entries of blind writes no one read leave the map at once: a
	// cache of keys written once, as a dedup's ids are, only makes the
	// map larger (and each of its lookups slower). The others wait for
	// evict.
	kept := r.entries[:0]
	for _, e := range r.entries {
		if e.unread && !e.dirty && !d.unapplied(e) && d.entries[e.key] == e {
			delete(d.entries, e.key)
			continue
		}
		kept = append(kept, e)
	}
	if len(kept) < len(r.entries) {
		d.drops++ // an entry held across a call (KeyValue.Update) may be gone
	}
	d.clean.push(kept...)
	if cap(r.entries) <= maxSpare {
		clear(r.entries)
		d.spareQueued = r.entries[:0]
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
