// Package examples lists the example apps that `runner run` and `runner
// demo` know, each with its own flags. The apps themselves live in the
// sub-packages; their topics and record formats are fixed by CONTRACT.md.
// examples/largeorders is different: a program of its own, the way a
// topology of one's own runs with txn/service's Main.
package examples

import (
	"flag"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/examples/dedup"
	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/examples/revenue"
	"github.com/sluicehq/sluice/stream"
)

// App is one example application.
type App struct {
	// Name selects the app: `runner run NAME`.
	Name string
	// Summary is the one line `runner apps` prints.
	Summary string
	// Flags registers the app's own flags on fs and returns the function
	// that builds the topology once fs is parsed.
	Flags func(fs *flag.FlagSet) (build func(appID string) (*stream.Topology, error))
	// Inputs and Outputs name the flags that hold the app's source and
	// sink topics, for tools that create topics (runner demo).
	Inputs, Outputs []string
}

// All returns the example apps, sorted by name.
func All() []App {
	apps := []App{
		{
			Name:    "dedup",
			Summary: "copy each event once per --window of event time, by its --id-field",
			Flags: func(fs *flag.FlagSet) func(string) (*stream.Topology, error) {
				in := fs.String("input", "events", "source topic (JSON objects with the id field)")
				out := fs.String("output", "events-unique", "sink topic")
				id := fs.String("id-field", "event_id", "the JSON field that identifies an event (a string or a number)")
				window := fs.Duration("window", time.Hour, "span of event time within which an id is seen once")
				return func(appID string) (*stream.Topology, error) { return dedup.Build(appID, *in, *out, *id, *window) }
			},
			Inputs:  []string{"input"},
			Outputs: []string{"output"},
		},
		{
			Name:    "enrich",
			Summary: "join orders with the latest customer, re-keyed by customer_id",
			Flags: func(fs *flag.FlagSet) func(string) (*stream.Topology, error) {
				orders := fs.String("orders", "orders", "orders topic")
				customers := fs.String("customers", "customers", "customers topic (compacted, key customer_id)")
				out := fs.String("output", "orders-enriched", "sink topic")
				return func(appID string) (*stream.Topology, error) { return enrich.Build(appID, *orders, *customers, *out) }
			},
			Inputs:  []string{"orders", "customers"},
			Outputs: []string{"output"},
		},
		{
			Name:    "passthrough",
			Summary: "copy every record of --input to --output unchanged",
			Flags: func(fs *flag.FlagSet) func(string) (*stream.Topology, error) {
				in := fs.String("input", "in", "source topic")
				out := fs.String("output", "out", "sink topic")
				return func(appID string) (*stream.Topology, error) { return passthrough.Build(appID, *in, *out) }
			},
			Inputs:  []string{"input"},
			Outputs: []string{"output"},
		},
	}
	apps = append(apps, App{
		Name:    "revenue",
		Summary: "orders and revenue per customer_id and tumbling --window, one record per window once closed",
		Flags: func(fs *flag.FlagSet) func(string) (*stream.Topology, error) {
			orders := fs.String("orders", "orders", "orders topic")
			out := fs.String("output", "revenue-per-minute", "sink topic")
			size := fs.Duration("window", time.Minute, "tumbling window size (event time)")
			grace := fs.Duration("grace", 10*time.Second, "how long after a window's end its late orders still count")
			return func(appID string) (*stream.Topology, error) {
				return revenue.Build(appID, *orders, *out, *size, *grace)
			}
		},
		Inputs:  []string{"orders"},
		Outputs: []string{"output"},
	})
	slices.SortFunc(apps, func(a, b App) int { return strings.Compare(a.Name, b.Name) })
	return apps
}

// Lookup returns the app called name.
func Lookup(name string) (App, bool) {
	for _, a := range All() {
		if a.Name == name {
			return a, true
		}
	}
	return App{}, false
}
