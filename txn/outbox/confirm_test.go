package outbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/broker"
)

// The confirmer tells a committed cursor record from an aborted one, and
// from one committed after an aborted one of the same key.
func TestConfirmerTellsCommittedFromAborted(t *testing.T) {
	c, addr, err := broker.Start(broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := Config{Brokers: []string{addr}, Name: "n"}.withDefaults()
	if err := createCursorTopic(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("confirm"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	write := func(commit bool, cur Cursor) *kgo.Record {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: cfg.CursorTopic, Key: []byte("n"), Value: cursorValue{Cursor: cur, Owner: "o"}.encode()}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	first := write(true, Cursor{1, 1})
	conf, err := newConfirmer(cfg, first.Partition, first.Offset)
	if err != nil {
		t.Fatal(err)
	}
	defer conf.close()
	if err := conf.confirm(ctx, first); err != nil {
		t.Fatalf("a committed record: %v", err)
	}
	aborted := write(false, Cursor{2, 2})
	if err := conf.confirm(ctx, aborted); !errors.Is(err, errNotCommitted) {
		t.Fatalf("an aborted record: %v, want errNotCommitted", err)
	}
	// Another relay's record in between, then ours again.
	other, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.ProduceSync(ctx, &kgo.Record{Topic: cfg.CursorTopic, Key: []byte("other"), Value: []byte("{}")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	third := write(true, Cursor{3, 3})
	if err := conf.confirm(ctx, third); err != nil {
		t.Fatalf("a committed record after an aborted one: %v", err)
	}
	if _, err := kadm.NewClient(other).ListEndOffsets(ctx, cfg.CursorTopic); err != nil {
		t.Fatal(err)
	}
}
