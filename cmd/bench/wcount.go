package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/window"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The sluice_eos_wcount variant: a tumbling one-minute windowed count per
// key with EmitOnClose, over input whose event time advances a
// millisecond a record (1M records: about 17 minutes of event time),
// keys "k<seq mod wcountKeys>". Each full window holds 60 records of
// every key, and is emitted once when stream time reaches its end.
const (
	wcountKeys  = 1000
	wcountStore = "window-counts"
)

var wcountStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func wcountTopology(app, in, out string) (*stream.Topology, error) {
	b := stream.NewBuilder(app)
	g := stream.From(b, in, serde.String, serde.Bytes, stream.Named("read-"+in)).GroupByKey(serde.String, serde.Bytes)
	stream.WindowedBy(g, window.Tumbling{Size: time.Minute}).
		Count(wcountStore, stream.EmitOnClose()).
		ToStream().
		Map(func(k window.Keyed[string], n int64) (string, int64) {
			return k.Key + "@" + strconv.FormatInt(k.Window.Start.Sub(wcountStart).Milliseconds()/60_000, 10), n
		}, stream.Named("key-by-window")).
		To(out, serde.String, serde.Int64, stream.Named("write-"+out))
	return b.Build()
}

// produceTimed writes sequence numbers [0, n) to topic with keys
// "k<seq mod wcountKeys>" and event time wcountStart plus seq ms.
func produceTimed(ctx context.Context, brokers []string, topic string, n int64, size int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	var mu sync.Mutex
	var first error
	for seq := range n {
		r := &kgo.Record{Key: []byte("k" + strconv.FormatInt(seq%wcountKeys, 10)), Value: txntest.SeqValue(seq, size),
			Timestamp: wcountStart.Add(time.Duration(seq) * time.Millisecond)}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}

// checkWindowCounts reads the output with read_committed: every record a
// full window's count of one key (60), no (key, window) twice, and every
// window that every partition's stream time has passed (all but the last
// two) present for every key.
func checkWindowCounts(ctx context.Context, e env, t topics, n int64) error {
	full := n / 60_000 // windows whose records were all produced
	want := int64(wcountKeys) * max(full-1, 0)
	seen := map[string]int{}
	var wrong int64
	var first string
	var read int64
	err := txntest.ReadCommitted(ctx, e.brokers, t.out, func(r *kgo.Record) {
		read++
		seen[string(r.Key)]++
		if len(r.Value) != 8 || binary.BigEndian.Uint64(r.Value) != 60 {
			wrong++
			if first == "" {
				first = fmt.Sprintf("%s=%x", r.Key, r.Value)
			}
		}
	}, func() bool { return read >= want })
	if err != nil {
		return err
	}
	var dups, missing int64
	for k, c := range seen {
		if c > 1 {
			dups += int64(c - 1)
		}
		_, w, _ := strings.Cut(k, "@")
		if i, _ := strconv.ParseInt(w, 10, 64); i >= full {
			wrong++
		}
	}
	for k := range int64(wcountKeys) {
		for w := range max(full-1, 0) {
			if seen["k"+strconv.FormatInt(k, 10)+"@"+strconv.FormatInt(w, 10)] == 0 {
				missing++
			}
		}
	}
	if dups+missing+wrong > 0 {
		return fmt.Errorf("window counts in %s: %d records, %d duplicates, %d missing, %d wrong (first: %s)", t.out, read, dups, missing, wrong, first)
	}
	return nil
}

func wcountChangelog(app string) string { return topology.ChangelogTopic(app, wcountStore) }
