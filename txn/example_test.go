package txn_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
)

// A running worker answers what a key holds in one of its stores, from
// any goroutine: here the clicks of each user, counted in the store
// "clicks-per-user", on the embedded broker. A query answers from the
// last committed batch; the example asks until alice's three clicks are
// committed.
func ExampleWorker_QueryKey() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, addr, err := broker.Start(broker.Config{})
	if err != nil {
		panic(err)
	}
	brokers := []string{addr}
	if err := broker.CreateTopics(ctx, brokers, 2, "clicks"); err != nil {
		panic(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	for _, user := range []string{"alice", "bob", "alice", "alice"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "clicks", Key: []byte(user), Value: []byte("/home")}).FirstErr(); err != nil {
			panic(err)
		}
	}

	b := stream.NewBuilder("clicks-app")
	stream.From(b, "clicks", serde.String, serde.String).
		GroupByKey(serde.String, serde.String).
		Count("clicks-per-user")
	topo, err := b.Build()
	if err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "sluice-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	w, err := txn.NewWorker(topo, txn.Config{Brokers: brokers, Instance: "w1", StateDir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()

	for {
		res, err := w.QueryKey(ctx, "clicks-per-user", "alice")
		if err != nil {
			panic(err)
		}
		if res.Status == txn.QueryFound && string(res.Value) == "3" {
			fmt.Println("alice:", res.Status, string(res.Value))
			break
		}
		time.Sleep(10 * time.Millisecond) // not ready yet, or not all committed
	}
	res, _ := w.QueryKey(ctx, "clicks-per-user", "bob")
	fmt.Println("bob:", res.Status, string(res.Value))
	res, _ = w.QueryKey(ctx, "clicks-per-user", "carol")
	fmt.Println("carol:", res.Status)
	res, _ = w.QueryKey(ctx, "clicks", "alice")
	fmt.Printf("%s: %s\n", res.Status, res.Why)
	// Output:
	// alice: found 3
	// bob: found 1
	// carol: absent
	// unknown store: no store clicks: the queryable stores are clicks-per-user
}
