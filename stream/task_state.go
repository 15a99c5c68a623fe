package stream

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// restoreChunk is how many restored records are made durable at once, so
// that a huge restore neither holds everything in one batch nor starts
// over after a crash.
const restoreChunk = 50_000

// openState opens the task's database and creates its stores' handles. A
// database that cannot be used is wiped: the restore then starts from the
// beginning of the changelogs.
func (t *task) openState(stores []*storeSpec) error {
	if len(stores) == 0 {
		return nil
	}
	dir := filepath.Join(t.cfg.StateDir, taskDir(t.id))
	opts := state.Options{FlushWrites: t.cfg.StateFlushWrites}
	if t.cfg.StateDir == "" {
		opts.FS = vfs.NewMem()
	}
	db, err := state.Open(dir, opts)
	if errors.Is(err, state.ErrCorrupt) && t.cfg.StateDir != "" {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			return fmt.Errorf("stream: task %d_%d: wipe unusable state: %w (after: %v)", t.id.Subtopology, t.id.Partition, rmErr, err)
		}
		db, err = state.Open(dir, opts)
	}
	if err != nil {
		return fmt.Errorf("stream: task %d_%d: %w", t.id.Subtopology, t.id.Partition, err)
	}
	t.db = db
	t.stores = map[*storeSpec]any{}
	t.changelogs = map[string][]byte{}
	t.restorers = map[string]func(key, value []byte) error{}
	t.packed = map[string]func(key, value []byte) error{}
	t.restoredTo = map[string]int64{}
	t.sourceOffsets = map[string]int64{}
	for _, s := range stores {
		h, err := s.open(t)
		if err != nil {
			db.Close()
			return err
		}
		t.stores[s] = h
		topic := s.changelogTopic(t.topo.appID)
		t.changelogs[topic] = state.StorePrefix(s.name)
		if r, ok := h.(restorer); ok {
			t.restorers[topic] = r.Restore
		}
		if p, ok := h.(packer); ok {
			t.packed[topic] = p.RestorePacked
			t.packers = append(t.packers, p)
		}
	}
	t.input = map[string]*int64{}
	for _, src := range t.topo.subSrcs[t.id.Subtopology] {
		for _, topic := range src.topics {
			t.input[topic] = new(int64)
		}
	}
	t.fromCheckpoint()
	return nil
}

// fromCheckpoint sets what the task derives from its input besides its
// stores, its stream time and input positions, to what the checkpoint of
// its last commit holds.
func (t *task) fromCheckpoint() {
	cp := t.db.Checkpoint()
	t.streamTime = time.Time{}
	if cp.StreamTime != 0 {
		t.streamTime = time.UnixMilli(cp.StreamTime).UTC()
	}
	for topic, pos := range t.input {
		at, ok := cp.Input[topic]
		if !ok {
			at = -1
		}
		*pos = at
	}
	clear(t.sourceOffsets)
}

// changelogWriter is one store's changelog in a task (state.Changelog): a
// store write becomes a record of the task's partition of the store's
// changelog topic, produced in the open transaction. It carries the
// timestamp of the record being processed, as in Kafka Streams (and spares
// the producer a clock read per record). The key is copied into the
// outputs' reused memory; the value is kept as is.
//
// The writer is the one place that knows which outputs are changelog
// records: it keeps the last one it wrote, whose offset the producer sets
// when the broker acknowledges it, and which moves the store's checkpoint
// when the transaction commits (see task.noteOffsets).
type changelogWriter struct {
	t       *task
	topic   string
	headers []kgo.RecordHeader // of every record (a packed changelog's mark)
	last    *kgo.Record        // written in the open transaction; nil: none
	next    int64              // the offset after the last acknowledged record; -1: none known
}

// Append implements state.Changelog.
func (w *changelogWriter) Append(topic string, key, value []byte) {
	t := w.t
	r := t.newRecord()
	*r = kgo.Record{Topic: topic, Partition: t.id.Partition, Key: t.copyBytes(key), Value: value, Headers: w.headers, Timestamp: t.recordTime}
	t.out = append(t.out, r)
	w.last = r
}

// newChangelogWriter returns the changelog of a store of t whose changelog
// is topic.
func (t *task) newChangelogWriter(topic string) *changelogWriter {
	w := &changelogWriter{t: t, topic: topic, next: -1}
	t.writers = append(t.writers, w)
	return w
}

// noteOffsets takes the offsets the producer set on the last changelog
// records written, before their memory is reused. A record without one
// (franz-go reports -1 when the broker did not say) leaves its changelog's
// checkpoint behind: a restore then replays more, which is safe.
func (t *task) noteOffsets() {
	for _, w := range t.writers {
		if w.last != nil && w.last.Offset >= 0 {
			w.next = max(w.next, w.last.Offset+1)
		}
		w.last = nil
	}
}

// written returns, for each changelog written since the last commit, the
// offset after its last acknowledged record, and forgets them.
func (t *task) written() map[string]int64 {
	t.noteOffsets()
	next := make(map[string]int64, len(t.writers))
	for _, w := range t.writers {
		if w.next >= 0 {
			next[w.topic] = w.next
		}
		w.next = -1
	}
	return next
}

// restorer is a store with a layout of its own (state.Expiring): it
// writes its restored changelog records itself.
type restorer interface {
	Restore(key, value []byte) error
}

// packer is a store that holds its changelog writes until FlushChangelog
// packs them (state.Segmented): the runtime flushes the task after each
// poll and before the transaction ends (Flush), and the task restores the
// records marked with state.PackedHeader through RestorePacked.
type packer interface {
	FlushChangelog() error
	Unflushed() int
	RestorePacked(key, value []byte) error
}

var _ topology.Flusher = (*task)(nil)

// Flush implements topology.Flusher: the changelog writes the stores hold
// become records (packs), appended to out.
func (t *task) Flush(out []*kgo.Record) ([]*kgo.Record, error) {
	if len(t.packers) == 0 || t.closed {
		return out, nil
	}
	t.out = out
	var err error
	for _, p := range t.packers {
		if err = p.FlushChangelog(); err != nil {
			break
		}
	}
	out, t.out = t.out, nil
	if err != nil {
		return out, fmt.Errorf("stream: task %d_%d: %w", t.id.Subtopology, t.id.Partition, err)
	}
	return out, nil
}

// statefulTask is a task with stores: it implements topology.StatefulTask.
type statefulTask struct{ *task }

var _ topology.StatefulTask = statefulTask{}

// RestoreFrom implements topology.StatefulTask.
func (t statefulTask) RestoreFrom() map[string]int64 {
	from := map[string]int64{}
	cp := t.db.Checkpoint()
	for topic := range t.changelogs {
		if off, ok := cp.Offsets[topic]; ok {
			from[topic] = off
		} else {
			from[topic] = -2
		}
	}
	return from
}

// Restore implements topology.StatefulTask.
func (t statefulTask) Restore(rec *kgo.Record) error {
	prefix, ok := t.changelogs[rec.Topic]
	if !ok {
		return fmt.Errorf("stream: task %d_%d: %q is not one of its changelogs", t.id.Subtopology, t.id.Partition, rec.Topic)
	}
	var err error
	if r := t.packed[rec.Topic]; r != nil && hasHeader(rec, state.PackedHeader) {
		err = r(rec.Key, rec.Value)
	} else if r := t.restorers[rec.Topic]; r != nil {
		err = r(rec.Key, rec.Value)
	} else {
		err = t.db.ApplyRestored(prefix, rec.Key, rec.Value)
	}
	if err != nil {
		return err
	}
	if _, table := t.input[rec.Topic]; !table {
		// A changelog record carries the timestamp of the input record
		// that wrote it, which its transaction committed: the stream time
		// was at least that. (A table's topic is read past the committed
		// input.) What the input since the checkpoint adds is seen by
		// SeeInput; after a full restore this is all there is.
		t.advance(rec.Timestamp)
	}
	t.restored++
	t.restoredTo[rec.Topic] = rec.Offset + 1
	if t.restored%restoreChunk == 0 {
		return t.commitState(t.restoredTo, false)
	}
	return nil
}

// InputFrom implements topology.StatefulTask.
func (t statefulTask) InputFrom() map[string]int64 { return t.knownInput() }

// knownInput returns the input positions that are known (see t.input).
func (t *task) knownInput() map[string]int64 {
	known := make(map[string]int64, len(t.input))
	for topic, pos := range t.input {
		if *pos >= 0 {
			known[topic] = *pos
		}
	}
	return known
}

// SeeInput implements topology.StatefulTask: rec advances the stream time (and
// the input position) as processing it did.
func (t statefulTask) SeeInput(rec *kgo.Record) {
	if pos := t.input[rec.Topic]; pos != nil {
		ts, err := t.eventTime(rec, t.timestamps[rec.Topic])
		t.see(ts, err == nil, rec, pos)
	}
}

// RestoreDone implements topology.StatefulTask. A restore that replayed
// records flushes them, in the background: a crash soon after then
// replays from here, not the same tail again.
func (t statefulTask) RestoreDone(next map[string]int64) error {
	if err := t.commitState(next, false); err != nil || t.restored == 0 {
		return err
	}
	if _, err := t.db.Flush(); err != nil {
		return fmt.Errorf("stream: task %d_%d: %w", t.id.Subtopology, t.id.Partition, err)
	}
	return nil
}

// Discard implements topology.StatefulTask: the pending writes go
// (state.DB.Discard), and the stream time and input positions go back to
// the checkpoint of the last commit.
func (t statefulTask) Discard() error {
	err := t.db.Discard()
	t.fromCheckpoint()
	for _, w := range t.writers {
		w.last, w.next = nil, -1
	}
	if err != nil {
		return fmt.Errorf("stream: task %d_%d: %w", t.id.Subtopology, t.id.Partition, err)
	}
	return nil
}

// Commit implements topology.StatefulTask: the checkpoint moves each
// changelog to the offset after the last record the transaction wrote
// there; the apply runs in the background (state.DB.CommitAsync); Close
// waits for it.
func (t statefulTask) Commit() error {
	for _, p := range t.packers {
		if n := p.Unflushed(); n > 0 {
			// The runtime flushes every task before the transaction ends
			// (topology.Flusher); committing now would apply writes the
			// changelog lacks.
			return fmt.Errorf("stream: task %d_%d: internal error: %d changelog writes were never flushed into the transaction", t.id.Subtopology, t.id.Partition, n)
		}
	}
	return t.commitState(t.written(), true)
}

// hasHeader reports whether rec carries a header called key.
func hasHeader(rec *kgo.Record, key string) bool {
	for _, h := range rec.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}

// commitState applies the pending writes with a checkpoint that moves the
// given changelogs to next and records the stream time; async returns
// before they are durable.
func (t *task) commitState(next map[string]int64, async bool) error {
	old := t.db.Checkpoint()
	cp := state.Checkpoint{Offsets: maps.Clone(old.Offsets), StreamTime: old.StreamTime, Input: maps.Clone(old.Input)}
	if cp.Offsets == nil {
		cp.Offsets = make(map[string]int64, len(t.changelogs))
	}
	if known := t.knownInput(); len(known) > 0 {
		if cp.Input == nil {
			cp.Input = known
		} else {
			maps.Copy(cp.Input, known)
		}
	}
	for _, m := range []map[string]int64{next, t.sourceOffsets} {
		for topic, off := range m {
			if _, ok := t.changelogs[topic]; ok && off > cp.Offsets[topic] {
				cp.Offsets[topic] = off
			}
		}
	}
	clear(t.sourceOffsets)
	if !t.streamTime.IsZero() {
		cp.StreamTime = t.streamTime.UnixMilli()
	}
	commit := t.db.Commit
	if async {
		commit = t.db.CommitAsync
	}
	if err := commit(cp); err != nil {
		return fmt.Errorf("stream: task %d_%d: %w", t.id.Subtopology, t.id.Partition, err)
	}
	return nil
}

// Restored returns how many changelog records the task has restored.
func (t statefulTask) Restored() int64 { return t.restored }

func taskDir(id topology.TaskID) string {
	return strconv.Itoa(id.Subtopology) + "_" + strconv.FormatInt(int64(id.Partition), 10)
}

var _ topology.StoreSizer = statefulTask{}

// StoreSizes implements topology.StoreSizer: it counts every store's
// keys, committed and pending (the runtime asks between batches, when
// none are pending), by walking them.
func (t statefulTask) StoreSizes() ([]topology.StoreSize, error) {
	if t.closed {
		return nil, errTaskClosed
	}
	sizes := make([]topology.StoreSize, 0, len(t.stores))
	for s := range t.stores {
		keys, disk, err := t.db.Size(state.StorePrefix(s.name))
		if err != nil {
			return nil, fmt.Errorf("stream: task %d_%d: size of store %s: %w", t.id.Subtopology, t.id.Partition, s.name, err)
		}
		sizes = append(sizes, topology.StoreSize{Store: s.name, Keys: keys, DiskBytes: disk})
	}
	slices.SortFunc(sizes, func(a, b topology.StoreSize) int { return strings.Compare(a.Store, b.Store) })
	return sizes, nil
}
