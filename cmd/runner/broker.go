package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/sluicehq/sluice/txn/broker"
)

// brokerUsage is the broker entry of CONTRACT.md, word for word.
const brokerUsage = `runner broker [--addr 127.0.0.1:9092] [--data-dir DIR] [--sync]
    Embedded Kafka-protocol broker (franz-go's kfake) for development,
    demos and tests. Prints "broker listening on ADDR" once ready, runs until
    SIGINT/SIGTERM. With --data-dir its log, offsets and transactions
    survive a restart (also after kill -9).
`

// brokerCommand is runner broker.
var brokerCommand = command{
	name:    "broker",
	summary: "embedded Kafka-protocol broker (kfake) for development, demos and tests",
	usage:   brokerUsage,
	run:     runBroker,
}

// runBroker serves a one-broker cluster until ctx is cancelled, then closes
// it, which with --data-dir writes the state a clean restart loads fast.
func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("broker", flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:9092", "host:port to listen on; port 0 picks a free one")
	dataDir := flags.String("data-dir", "", "directory to persist the log, offsets and transactions in; empty keeps all in memory")
	syncWrites := flags.Bool("sync", false, "fsync every write (survives power loss, not only kill -9)")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return usageErrorf("runner: broker takes no arguments, got %q", flags.Args())
	}
	if _, port, err := net.SplitHostPort(*addr); err != nil {
		return usageErrorf("runner: broker: --addr %q: %v", *addr, err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return usageErrorf("runner: broker: --addr %q: port must be a number from 0 to 65535", *addr)
	}

	cluster, listening, err := broker.Start(broker.Config{
		Addr: *addr, DataDir: *dataDir, Sync: *syncWrites, Log: stderr,
	})
	if err != nil {
		return fmt.Errorf("runner: broker: %w", err)
	}
	// Scripts and tests wait for this exact line; os.Stdout is unbuffered.
	fmt.Fprintf(stdout, "broker listening on %s\n", listening)
	<-ctx.Done()
	cluster.Close()
	return nil
}
