package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// confirmer reads a relay's cursor records back from the cursor topic,
// read_committed, to confirm that each transaction the producer reported
// committed did commit, before the relay goes on from it.
//
// # Why
//
// franz-go (v1.22.3) can turn EndTransaction(TryCommit) into an abort and
// return nil: when it finds no partition marked as added to the
// transaction although records were produced ("no produce succeeded in
// this transaction but produces were attempted"), it aborts "to clear
// any server-side partition registrations" and reports success. Against
// the embedded broker this happened to a transaction whose only record
// had been acknowledged (offset and all), produced to a topic new to the
// client, after the client's InitProducerID had aborted its predecessor's
// open transaction: about one relay session in 200 under the kill test,
// one transaction in 1,500 in a loop of fresh clients. Trusting the
// report, a relay would move its cursor past rows that never reached
// Kafka and delete them. Confirmed instead, such a transaction sends the
// relay back to the cursor topic's last committed cursor, and the rows
// are relayed again.
type confirmer struct {
	cl        *kgo.Client
	partition int32
	next      int64            // every offset below it has been read
	ours      map[int64][]byte // committed cursor records of this relay read at or after the one awaited
}

// newConfirmer returns a confirmer that reads the cursor topic's
// partition from offset from on.
func newConfirmer(cfg Config, partition int32, from int64) (*confirmer, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.CursorTopic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers are kept: an aborted cursor record is known to be
		// so once the read passes its offset, which a marker does.
		kgo.KeepControlRecords()}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("outbox: reading the cursor topic %s back: %w", cfg.CursorTopic, err)
	}
	return &confirmer{cl: cl, partition: partition, next: from, ours: map[int64][]byte{}}, nil
}

func (c *confirmer) close() { c.cl.Close() }

// errNotCommitted is a transaction the producer reported committed whose
// cursor record the cursor topic does not hold as committed.
var errNotCommitted = errors.New("reported committed, but its cursor record is not committed in the cursor topic (an abort in disguise)")

// confirm waits until the read has passed rec (a cursor record the
// producer acknowledged, in a transaction reported committed) and returns
// nil when rec was read as committed, errNotCommitted when it was not.
func (c *confirmer) confirm(ctx context.Context, rec *kgo.Record) error {
	if rec.Partition != c.partition {
		return fmt.Errorf("outbox: cursor record %s[%d]@%d: the relay's cursor records are in partition %d", rec.Topic, rec.Partition, rec.Offset, c.partition)
	}
	for c.next <= rec.Offset {
		fs := c.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("outbox: confirming cursor record %s[%d]@%d: read up to offset %d: %w", rec.Topic, rec.Partition, rec.Offset, c.next, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("outbox: reading the cursor topic %s[%d] back: %w", t, p, err))
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			c.next = max(c.next, r.Offset+1)
			if !r.Attrs.IsControl() && r.Offset >= rec.Offset && bytes.Equal(r.Key, rec.Key) {
				c.ours[r.Offset] = r.Value
			}
		})
	}
	v, ok := c.ours[rec.Offset]
	for off := range c.ours {
		if off <= rec.Offset {
			delete(c.ours, off)
		}
	}
	if !ok || !bytes.Equal(v, rec.Value) {
		return errNotCommitted
	}
	return nil
}
