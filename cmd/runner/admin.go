package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluicehq/sluice/txn"
)

var topicsCommand = command{
	name:    "topics",
	summary: "create the topics an app needs",
	usage: `runner topics create APP [--brokers 127.0.0.1:9092] [--app-id ID]
               [--partitions 8] [APP's own flags]
    Create APP's missing source and sink topics with --partitions
    partitions each (the brokers' default replication), then, as a worker's
    start does, check that co-partitioned sources agree and create the
    missing internal topics (changelog, repartition, DLQ). Topics that exist
    are left as they are. Prints each topic created, one a line.
`,
	run: runTopics,
}

func runTopics(ctx context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return usageErrorf("runner: topics: the only subcommand is create")
	}
	var brokers, appID string
	var partitions int
	app, build, err := parseApp("topics create", args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&brokers, "brokers", "127.0.0.1:9092", "comma-separated seed brokers")
		fs.StringVar(&appID, "app-id", "", "application id: internal topic prefix (default: APP)")
		fs.IntVar(&partitions, "partitions", 8, "partitions of each source and sink topic created")
	})
	if err != nil {
		return err
	}
	if partitions < 1 {
		return usageErrorf("runner: topics create: --partitions %d: need at least 1", partitions)
	}
	if appID == "" {
		appID = app.Name
	}
	topo, err := build(appID)
	if err != nil {
		return fmt.Errorf("runner: topics create %s: %w", app.Name, err)
	}
	created, err := txn.CreateTopics(ctx, topo, strings.Split(brokers, ","), int32(partitions))
	if err != nil {
		return fmt.Errorf("runner: topics create %s: %w", app.Name, err)
	}
	for _, t := range created {
		fmt.Fprintln(stdout, t)
	}
	return nil
}

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

func runReset(ctx context.Context, args []string, stdout, _ io.Writer) error {
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
