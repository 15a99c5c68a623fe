package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/examples"
)

var describeCommand = command{
	name:    "describe",
	summary: "print an app's topology: sources, operators, stores, internal topics",
	usage: `runner describe APP [APP's own flags]
    Print the topology of APP: sub-topologies with their sources, operators
    and sinks, stores, and the changelog / repartition / DLQ topics.
`,
	run: func(_ context.Context, args []string, stdout, _ io.Writer) error {
		app, build, err := parseApp("describe", args, nil)
		if err != nil {
			return err
		}
		topo, err := build(app.Name)
		if err != nil {
			return fmt.Errorf("runner: describe %s: %w", app.Name, err)
		}
		_, err = fmt.Fprint(stdout, topo.Describe())
		return err
	},
}

var appsCommand = command{
	name:    "apps",
	summary: "list the example apps",
	usage: `runner apps
    List the example apps with one line each.
`,
	run: func(_ context.Context, args []string, stdout, _ io.Writer) error {
		if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		if len(args) > 0 {
			return usageErrorf("runner: apps takes no arguments, got %q", args)
		}
		for _, a := range examples.All() {
			fmt.Fprintf(stdout, "%-12s %s\n", a.Name, a.Summary)
		}
		return nil
	},
}
