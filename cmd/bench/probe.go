package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// probe watches one measured loop through franz-go hooks, which the loop's
// clients carry (the raw loop directly, sluice through Config.ClientOpts),
// so that both kinds of loop are observed the same way. The hooks cost one
// atomic operation per produced batch, fetched batch or response.
type probe struct {
	out string // the loop's output topic
	n   int64  // records the loop must copy

	firstFetch atomic.Int64 // unix nanoseconds of the first fetched batch
	fetched    atomic.Int64 // input records fetched (control records included)
	acked      atomic.Int64 // output records the broker acknowledged
	commits    atomic.Int64 // EndTxn or OffsetCommit responses
	allAcked   chan struct{}
	once       sync.Once
}

var (
	_ kgo.HookFetchBatchRead      = (*probe)(nil)
	_ kgo.HookProduceBatchWritten = (*probe)(nil)
	_ kgo.HookBrokerRead          = (*probe)(nil)
)

func newProbe(out string, n int64) *probe {
	return &probe{out: out, n: n, allAcked: make(chan struct{})}
}

func (p *probe) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	if p.firstFetch.Load() == 0 {
		p.firstFetch.CompareAndSwap(0, time.Now().UnixNano())
	}
	p.fetched.Add(int64(m.NumRecords))
}

func (p *probe) OnProduceBatchWritten(_ kgo.BrokerMetadata, topic string, _ int32, m kgo.ProduceBatchMetrics) {
	if topic == p.out && p.acked.Add(int64(m.NumRecords)) >= p.n {
		p.once.Do(func() { close(p.allAcked) })
	}
}

func (p *probe) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil && (key == int16(kmsg.EndTxn) || key == int16(kmsg.OffsetCommit)) {
		p.commits.Add(1)
	}
}

// waitCommitted returns the time at which the group's committed offsets
// first covered every input record (ends: the input's end offset per
// partition). For exactly_once the offsets commit in the same transaction
// as the outputs (the broker writes the output's commit markers before it
// applies the offsets), and at_least_once commits them after the outputs
// are acknowledged, so either way every output is committed by then.
//
// It asks the group coordinator every 50ms while the loop works, and
// every millisecond once every output record has been acknowledged, when
// only the last commit is missing: the clock stops at most about a
// millisecond late, and the questions barely load the broker meanwhile.
func (p *probe) waitCommitted(ctx context.Context, adm *kadm.Client, group, topic string, ends map[int32]int64) (time.Time, error) {
	allAcked := p.allAcked
	interval := 50 * time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for the commit of all %d records (%d outputs acknowledged): %w", p.n, p.acked.Load(), ctx.Err())
		case <-allAcked:
			allAcked, interval = nil, time.Millisecond
			t.Reset(interval)
		case <-t.C:
			got, err := adm.FetchOffsets(ctx, group)
			if err == nil && covered(got, topic, ends) {
				return time.Now(), nil
			}
			t.Reset(interval)
		}
	}
}

// covered reports whether the committed offsets reach ends on every
// partition.
func covered(got kadm.OffsetResponses, topic string, ends map[int32]int64) bool {
	for p, end := range ends {
		o, ok := got.Lookup(topic, p)
		if end > 0 && (!ok || o.Err != nil || o.At < end) {
			return false
		}
	}
	return true
}
