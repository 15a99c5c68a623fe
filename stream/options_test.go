package stream_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
)

// Named is accepted by every operator whose name is optional.
var (
	_ stream.Option        = stream.Named("n")
	_ stream.SourceOption  = stream.Named("n")
	_ stream.ProcessOption = stream.Named("n")
)

// An option compiles only where it means something: each option's type
// implements the option interfaces of the operators it applies to and no
// other. (The assertions go through an interface value because a wrong
// use is a compile error, which a test cannot observe otherwise.)
func TestOptionsApplyOnlyWhereTheyMeanSomething(t *testing.T) {
	store := stream.NewKeyValueStore(stream.NewBuilder("o"), "s", serde.String, serde.Int64)
	ts := func(*kgo.Record) (time.Time, error) { return time.Time{}, nil }
	cases := map[string]struct {
		opt                           any
		option, source, process, wind bool
	}{
		"Named":         {opt: stream.Named("n"), option: true, source: true, process: true},
		"WithStores":    {opt: stream.WithStores(store), process: true},
		"WithTimestamp": {opt: stream.WithTimestamp(ts), source: true},
		"EmitOnClose":   {opt: stream.EmitOnClose(), wind: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, option := tc.opt.(stream.Option)
			_, source := tc.opt.(stream.SourceOption)
			_, process := tc.opt.(stream.ProcessOption)
			_, wind := tc.opt.(stream.WindowOption)
			require.Equal(t, tc.option, option, "stateless operators (Option)")
			require.Equal(t, tc.source, source, "stream.From (SourceOption)")
			require.Equal(t, tc.process, process, "Process (ProcessOption)")
			require.Equal(t, tc.wind, wind, "windowed aggregations (WindowOption)")
		})
	}
}
