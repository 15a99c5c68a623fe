// Package passthrough is the simplest sluice app: it copies every record
// of one topic to another unchanged (key, value, headers, timestamp; nulls
// stay null). It is the baseline for benchmarks and the exactly-once
// checker.
package passthrough

import (
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
)

// Build returns the passthrough topology reading input and writing output.
func Build(appID, input, output string) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	stream.From(b, input, serde.Bytes, serde.Bytes, stream.Named("read-"+input)).
		To(output, serde.Bytes, serde.Bytes, stream.Named("write-"+output))
	return b.Build()
}
