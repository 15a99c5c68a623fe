package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sluicehq/sluice/txn/service"
)

// usageError is a command line runner cannot act on: an unknown flag, a
// flag value that does not parse, or a wrong number of arguments. dispatch
// prints it followed by the command's usage and exits 2; any other error
// exits 1. Find it with errors.As.
type usageError struct{ err error }

// Error returns the message of the underlying error.
func (e *usageError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error.
func (e *usageError) Unwrap() error { return e.err }

// helpError is a request for a command's help (it is flag.ErrHelp) that
// knows more than the command's usage: the flags of the app it names.
type helpError struct{ more string }

// Error returns flag.ErrHelp's message.
func (*helpError) Error() string { return flag.ErrHelp.Error() }

// Unwrap returns flag.ErrHelp.
func (*helpError) Unwrap() error { return flag.ErrHelp }

// usageErrorf returns a *usageError with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// parseFlags parses a subcommand's args into fs. Every flag defined in fs
// is first set from its SLUICE_<FLAG> environment variable where that is
// set, then from args, so the command line wins. fs must be created with
// flag.ContinueOnError; parseFlags silences its output because dispatch
// prints errors and usage itself.
//
// It returns flag.ErrHelp for -h/--help and a *usageError for anything
// that does not parse, from args or the environment.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := service.EnvName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok || err != nil {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = usageErrorf("runner: %s: invalid value %q for %s: %v", fs.Name(), v, name, serr)
		}
	})
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErrorf("runner: %s: %v", fs.Name(), err)
	}
	return nil
}
