// Command runner is how operators, scripts and tests drive sluice: it runs
// an embedded broker, workers of the example apps, and the end-to-end demo.
// CONTRACT.md in the shared folder is the interface it keeps stable.
//
// # Exit codes
//
// 0 on a clean stop (including SIGINT/SIGTERM), 1 on a fatal error with a
// message on stderr naming what to fix, 2 on a usage error: an unknown
// command, an unknown flag or a flag value that does not parse.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sluicehq/sluice/txn/service"
)

// command is one subcommand of runner. Each lives in its own file as a
// package-level value and is listed in commands.
type command struct {
	// name is the word after runner that selects the command.
	name string
	// summary is the one line runner --help shows beside the name.
	summary string
	// usage is the full text runner help NAME and NAME --help print, and
	// what a usage error of the command is followed by on stderr.
	usage string
	// run carries the command out. It blocks until ctx is cancelled or
	// the work is done, returns nil on a clean stop, a *usageError for a
	// bad command line and any other error for a fatal failure.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists runner's subcommands in the order runner --help shows them.
var commands = []command{
	brokerCommand,
	runCommand,
	demoCommand,
	describeCommand,
	topicsCommand,
	resetCommand,
	appsCommand,
	sinkCommand,
	relayCommand,
}

func main() {
	ctx, stop := service.SignalContext(context.Background())
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// dispatch runs the command args name and returns the process exit code.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "runner: missing command\n\n", topUsage())
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) == 1 {
			fmt.Fprint(stdout, topUsage())
			return 0
		}
		cmd, ok := lookup(args[1])
		if !ok || len(args) > 2 {
			fmt.Fprintf(stderr, "runner: help: unknown command %q\n\n%s", strings.Join(args[1:], " "), topUsage())
			return 2
		}
		fmt.Fprint(stdout, cmd.usage)
		return 0
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "runner: unknown command %q\n\n%s", args[0], topUsage())
		return 2
	}

	err := cmd.run(ctx, args[1:], stdout, stderr)
	var uerr *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, cmd.usage)
		if he, ok := errors.AsType[*helpError](err); ok {
			fmt.Fprint(stdout, he.more)
		}
		return 0
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "%v\n\n%s", err, cmd.usage)
		return 2
	default:
		fmt.Fprintln(stderr, err)
		return 1
	}
}

// lookup returns the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// topUsage is what runner --help prints: every command with its summary.
func topUsage() string {
	var b strings.Builder
	b.WriteString("Usage: runner COMMAND [flags] [args]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Run "runner help COMMAND" or "runner COMMAND --help" for a command's flags.
Env vars SLUICE_<FLAG> set any flag (--data-dir: SLUICE_DATA_DIR); the
command line wins.
Exit codes: 0 clean stop, 1 fatal error, 2 usage error.
`)
	return b.String()
}
