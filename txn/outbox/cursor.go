package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cursor is a relay's position in the outbox table: the (xid, seq) of the
// last row it relayed. Rows after it, in (xid, seq) order, are still to
// be relayed; rows up to it have been, and are deleted. The zero Cursor
// is before every row.
type Cursor struct {
	Xid uint64 `json:"xid"`
	Seq int64  `json:"seq"`
}

// Compare orders cursors as the rows they name: by xid, then seq.
func (c Cursor) Compare(o Cursor) int {
	return cmp.Or(cmp.Compare(c.Xid, o.Xid), cmp.Compare(c.Seq, o.Seq))
}

func (c Cursor) String() string { return fmt.Sprintf("(xid %d, seq %d)", c.Xid, c.Seq) }

// cursorValue is the value of a cursor record: key = the relay's name.
type cursorValue struct {
	Cursor
	// Owner names the relay session that wrote it: each session's first
	// transaction is a claim that writes its owner with the cursor it
	// found, so a relay can tell whether another one took over.
	Owner string `json:"owner"`
}

func (v cursorValue) encode() []byte {
	b, _ := json.Marshal(v)
	return b
}

// readCursor reads the cursor topic from the start with read_committed
// and returns the last value of name's key (found false when there is
// none). With stable false it reads up to the end the partitions had when
// the read began, which waits for the transactions open in the topic to
// end: ours are ended by the InitProducerID that precedes a session's
// read, other relays' end within their transaction timeout. With stable
// true it reads up to their last stable offsets (the start of the oldest
// open transaction), which waits only when the entry just below one is a
// record of an aborted transaction whose marker lies beyond it.
func readCursor(ctx context.Context, cfg Config, stable bool) (cur cursorValue, found bool, err error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(cfg.CursorTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Markers are kept so that the read position is known: the
		// entry just before the end is often one.
		kgo.KeepControlRecords()}, cfg.ClientOpts...)...)
	if err != nil {
		return cursorValue{}, false, fmt.Errorf("outbox: reading the cursor topic %s: %w", cfg.CursorTopic, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	list := adm.ListEndOffsets
	if stable {
		list = adm.ListCommittedOffsets
	}
	ends, err := list(ctx, cfg.CursorTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return cursorValue{}, false, fmt.Errorf("outbox: listing the end offsets of the cursor topic %s: %w", cfg.CursorTopic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, cfg.CursorTopic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return cursorValue{}, false, fmt.Errorf("outbox: listing the start offsets of the cursor topic %s: %w", cfg.CursorTopic, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); !ok || s.Offset < o.Offset {
			left[o.Partition] = o.Offset
		}
	})
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			p := slices.Min(slices.Collect(maps.Keys(left)))
			return cursorValue{}, false, fmt.Errorf("outbox: reading the cursor topic %s: partition %d not read up to offset %d: %w",
				cfg.CursorTopic, p, left[p], ctx.Err())
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = errors.Join(ferr, fmt.Errorf("outbox: reading the cursor topic %s[%d]: %w", t, p, err))
			}
		})
		if ferr != nil {
			return cursorValue{}, false, ferr
		}
		var derr error
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() || string(r.Key) != cfg.Name {
				return
			}
			var v cursorValue
			if err := json.Unmarshal(r.Value, &v); err != nil {
				derr = fmt.Errorf("outbox: cursor record %s[%d]@%d of relay %q does not decode: %w", r.Topic, r.Partition, r.Offset, cfg.Name, err)
				return
			}
			cur, found = v, true
		})
		if derr != nil {
			return cursorValue{}, false, derr
		}
	}
	return cur, found, nil
}

// createCursorTopic creates the compacted cursor topic unless it exists.
func createCursorTopic(ctx context.Context, cfg Config) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer cl.Close()
	compact := "compact"
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, cfg.CursorTopic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("outbox: creating the cursor topic %s: %w", cfg.CursorTopic, err)
	}
	return nil
}
