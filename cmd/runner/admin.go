package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/txn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

var topicsCommand = command{
	name:    "topics",
	summary: "create the topics an app needs",
	usage: `runner topics create APP [--brokers 127.0.0.1:9092] [--app-id ID]
               [--partitions 8] [--replication-factor -1] [APP's own flags]
runner topics create --topics NAME,... [--brokers 127.0.0.1:9092]
               [--partitions 8] [--replication-factor -1]
    Create APP's missing source and sink topics with --partitions
    partitions and --replication-factor replicas each (-1: the brokers'
    default), then, as a worker's start does, check that co-partitioned
    sources agree and create the missing internal topics (changelog,
    repartition, DLQ), with --replication-factor replicas too. Topics that
    exist are left as they are. Prints each topic created, one a line.
    The second form creates the topics named, for a program of your own
    (whose workers create its internal topics themselves).
`,
	run: runTopics,
}

func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return usageErrorf("runner: topics: the only subcommand is create")
	}
	if len(args) > 1 && strings.HasPrefix(args[1], "-") && !isHelp(args[1]) {
		return createTopicList(ctx, args[1:], stdout, stderr)
	}
	var brokers, appID string
	var partitions, replication int
	app, build, err := parseApp("topics create", args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&brokers, "brokers", "127.0.0.1:9092", "comma-separated seed brokers")
		fs.StringVar(&appID, "app-id", "", "application id: internal topic prefix (default: APP)")
		fs.IntVar(&partitions, "partitions", 8, "partitions of each source and sink topic created")
		fs.IntVar(&replication, "replication-factor", -1, replicationUsage)
	})
	if err != nil {
		return err
	}
	if partitions < 1 {
		return usageErrorf("runner: topics create: --partitions %d: need at least 1", partitions)
	}
	if err := checkReplication(replication); err != nil {
		return err
	}
	if appID == "" {
		appID = app.Name
	}
	topo, err := build(appID)
	if err != nil {
		return fmt.Errorf("runner: topics create %s: %w", app.Name, err)
	}
	if err := waitForBroker(ctx, "topics create", strings.Split(brokers, ","), stderr); err != nil {
		return err
	}
	created, err := txn.CreateTopics(ctx, topo, strings.Split(brokers, ","), int32(partitions), int16(replication))
	if err != nil {
		return fmt.Errorf("runner: topics create %s: %w", app.Name, err)
	}
	for _, t := range created {
		fmt.Fprintln(stdout, t)
	}
	return nil
}

// replicationUsage is the usage of topics create's --replication-factor.
const replicationUsage = "replicas of each topic created; -1: the brokers' default (default.replication.factor)"

// checkReplication checks a --replication-factor: -1, or a replication
// factor Kafka can take.
func checkReplication(n int) error {
	if n == -1 || n >= 1 && n <= math.MaxInt16 {
		return nil
	}
	return usageErrorf("runner: topics create: --replication-factor %d: need -1 (the brokers' default) or 1 to %d", n, math.MaxInt16)
}

// createTopicList is `runner topics create --topics NAME,...`.
func createTopicList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("topics create", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	topics := fs.String("topics", "", "comma-separated names of the topics to create")
	partitions := fs.Int("partitions", 8, "partitions of each topic created")
	replication := fs.Int("replication-factor", -1, replicationUsage)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("runner: topics create: unexpected arguments %q (APP comes first, or --topics alone)", fs.Args())
	}
	if *topics == "" {
		return usageErrorf("runner: topics create: --topics is empty")
	}
	if *partitions < 1 {
		return usageErrorf("runner: topics create: --partitions %d: need at least 1", *partitions)
	}
	if err := checkReplication(*replication); err != nil {
		return err
	}
	if err := waitForBroker(ctx, "topics create", strings.Split(*brokers, ","), stderr); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		return fmt.Errorf("runner: topics create: %w", err)
	}
	defer cl.Close()
	resps, err := kadm.NewClient(cl).CreateTopics(ctx, int32(*partitions), int16(*replication), nil, strings.Split(*topics, ",")...)
	if err != nil {
		return fmt.Errorf("runner: topics create: %w", err)
	}
	names := slices.Sorted(maps.Keys(resps))
	for _, name := range names {
		switch r := resps[name]; {
		case r.Err == nil:
			fmt.Fprintln(stdout, r.Topic)
		case !errors.Is(r.Err, kerr.TopicAlreadyExists):
			return fmt.Errorf("runner: topics create: topic %q: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// brokerWait is how long the admin commands wait for a broker to answer:
// one started a moment before, in the background, is still binding its
// port (franz-go fails at once when its only seed refuses the dial).
const brokerWait = 15 * time.Second

// waitForBroker waits until a broker of brokers answers, for at most
// brokerWait, saying on stderr that it waits when the first try fails.
func waitForBroker(ctx context.Context, cmd string, brokers []string, stderr io.Writer) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("runner: %s: %w", cmd, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, brokerWait)
	defer cancel()
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for said := false; ; {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if !said {
			fmt.Fprintf(stderr, "runner: %s: waiting up to %v for a broker at %s (%v)\n", cmd, brokerWait, strings.Join(brokers, ","), err)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("runner: %s: no broker at %s answered within %v: %w", cmd, strings.Join(brokers, ","), brokerWait, err)
		case <-retry.C:
		}
	}
}

// isHelp tells whether arg asks for help.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

var resetCommand = command{
	name:    "reset",
	summary: "make an app start over from its input",
	usage: `runner reset APP [--brokers 127.0.0.1:9092] [--app-id ID] [--state-dir DIR]
               [APP's own flags]
    Make APP start over from the start of its input, as Kafka Streams'
    application reset tool does: delete its consumer group (the app id),
    so its committed offsets, and its changelog and repartition topics;
    then remove its local state, DIR (default: ./state/<app-id>, every
    instance's). Its DLQ, sinks and input are left as they are. Refuses
    while workers of the app run, naming them. Prints each topic deleted.
`,
	run: runReset,
}

func runReset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var brokers, appID, stateDir string
	app, build, err := parseApp("reset", args, func(fs *flag.FlagSet) {
		fs.StringVar(&brokers, "brokers", "127.0.0.1:9092", "comma-separated seed brokers")
		fs.StringVar(&appID, "app-id", "", "application id: consumer group and internal topic prefix (default: APP)")
		fs.StringVar(&stateDir, "state-dir", "", "local state to remove (default: ./state/<app-id>)")
	})
	if err != nil {
		return err
	}
	if appID == "" {
		appID = app.Name
	}
	if stateDir == "" {
		stateDir = filepath.Join("state", appID)
	}
	topo, err := build(appID)
	if err != nil {
		return fmt.Errorf("runner: reset %s: %w", app.Name, err)
	}
	if err := waitForBroker(ctx, "reset", strings.Split(brokers, ","), stderr); err != nil {
		return err
	}
	deleted, err := txn.ResetApp(ctx, topo, strings.Split(brokers, ","))
	for _, t := range deleted {
		fmt.Fprintln(stdout, t)
	}
	if err != nil {
		return fmt.Errorf("runner: reset %s: %w", app.Name, err)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		return fmt.Errorf("runner: reset %s: remove local state: %w", app.Name, err)
	}
	return nil
}
