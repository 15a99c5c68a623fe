package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// checkpointKey holds the checkpoint. Store keys start with a non-zero
// length byte, so they never collide with it.
var checkpointKey = []byte("\x00checkpoint")

// Checkpoint is what the database has applied: for each changelog topic,
// the offset from which a restore must replay; the task's stream time;
// and, for each source topic, the offset after the last input record that
// stream time covers. It is stored, JSON-encoded, in the same Pebble batch
// as the writes it covers.
type Checkpoint struct {
	// Offsets maps each changelog topic to the offset of the task's
	// partition from which a restore replays. It is never nil in a
	// checkpoint read from a database: empty when it has none.
	Offsets map[string]int64 `json:"offsets"`
	// StreamTime is the task's stream time, in Unix milliseconds.
	StreamTime int64 `json:"stream_time_ms"`
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

// encode returns cp as it is stored under checkpointKey.
func (cp Checkpoint) encode() ([]byte, error) { return json.Marshal(cp) }

// readCheckpoint reads the checkpoint of pdb, the database in dir: an
// empty one (with an empty Offsets) when it has none. A checkpoint that
// cannot be read is reported with ErrCorrupt.
func readCheckpoint(pdb *pebble.DB, dir string) (Checkpoint, error) {
	v, closer, err := pdb.Get(checkpointKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return Checkpoint{Offsets: map[string]int64{}}, nil
	case err != nil:
		return Checkpoint{}, fmt.Errorf("%w: read checkpoint in %s: %v", ErrCorrupt, dir, err)
	}
	defer closer.Close()
	var cp Checkpoint
	if err := json.Unmarshal(v, &cp); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint in %s: %v", ErrCorrupt, dir, err)
	}
	if cp.Offsets == nil {
		cp.Offsets = map[string]int64{}
	}
	return cp, nil
}

// ReadCheckpoint returns the checkpoint of the task database in dir, as a
// DB opened there would, without writing anything: the database is opened
// read-only, so that it stays as it was left (by a killed worker, say) for
// the next Open. A database with no checkpoint yet has an empty one.
//
// It fails if dir holds no database, with ErrCorrupt if the database or
// its checkpoint cannot be read (as Open), and if the directory is in use:
// Pebble locks it even read-only, so a worker's open database cannot be
// read. Only opts.FS matters; opts is validated as by Open.
func ReadCheckpoint(dir string, opts Options) (Checkpoint, error) {
	if err := opts.Validate(); err != nil {
		return Checkpoint{}, err
	}
	opts = opts.EnsureDefaults()
	if _, err := opts.FS.Stat(dir); err != nil {
		return Checkpoint{}, fmt.Errorf("state: no database in %s: %w", dir, err)
	}
	popts := opts.pebbleOptions(dir)
	popts.ReadOnly = true
	pdb, err := openPebble(dir, popts)
	if err != nil {
		return Checkpoint{}, err
	}
	cp, err := readCheckpoint(pdb, dir)
	if closeErr := pdb.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("state: close %s: %w", dir, closeErr)
	}
	return cp, err
}
