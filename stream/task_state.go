package stream

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn"
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
	t.restoredTo = map[string]int64{}
	t.sourceOffsets = map[string]int64{}
	for _, s := range stores {
		h, err := s.open(t)
		if err != nil {
			db.Close()
			return err
		}
		t.stores[s] = h
		t.changelogs[s.changelogTopic(t.topo.appID)] = state.StorePrefix(s.name)
	}
	cp := db.Checkpoint()
	if cp.StreamTime != 0 {
		t.streamTime = time.UnixMilli(cp.StreamTime).UTC()
	}
	t.input = map[string]*int64{}
	for _, src := range t.topo.subSrcs[t.id.Subtopology] {
		for _, topic := range src.topics {
			pos, ok := cp.Input[topic]
			if !ok {
				pos = -1
			}
			t.input[topic] = &pos
		}
	}
	return nil
}

// Append implements state.Changelog: a store write becomes a changelog
// record of the task's partition, produced in the open transaction. It
// carries the timestamp of the record being processed, as in Kafka
// Streams (and spares the producer a clock read per record). The key is
// copied into the outputs' reused memory; the value is kept as is.
func (t *task) Append(topic string, key, value []byte) {
	r := t.newRecord()
	*r = kgo.Record{Topic: topic, Partition: t.id.Partition, Key: t.copyBytes(key), Value: value, Timestamp: t.recordTime}
	t.out = append(t.out, r)
}

// statefulTask is a task with stores: it implements txn.StatefulTask.
type statefulTask struct{ *task }

var _ txn.StatefulTask = statefulTask{}

// RestoreFrom implements txn.StatefulTask.
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

// Restore implements txn.StatefulTask.
func (t statefulTask) Restore(rec *kgo.Record) error {
	prefix, ok := t.changelogs[rec.Topic]
	if !ok {
		return fmt.Errorf("stream: task %d_%d: %q is not one of its changelogs", t.id.Subtopology, t.id.Partition, rec.Topic)
	}
	if err := t.db.ApplyRestored(prefix, rec.Key, rec.Value); err != nil {
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

// InputFrom implements txn.StatefulTask.
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

// SeeInput implements txn.StatefulTask: rec advances the stream time (and
// the input position) as processing it did.
func (t statefulTask) SeeInput(rec *kgo.Record) {
	if pos := t.input[rec.Topic]; pos != nil {
		t.see(rec, pos)
	}
}

// RestoreDone implements txn.StatefulTask. A restore that replayed
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

// Commit implements txn.StatefulTask: the apply runs in the background
// (state.DB.CommitAsync); Close waits for it.
func (t statefulTask) Commit(next map[string]int64) error { return t.commitState(next, true) }

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

func taskDir(id txn.TaskID) string {
	return strconv.Itoa(id.Subtopology) + "_" + strconv.FormatInt(int64(id.Partition), 10)
}
