package stream_test

import (
	"testing"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/stretchr/testify/require"
)

// A global table is joined on a key the stream computes, whatever the
// partitioning: every task sees every partition of it.
func TestGlobalTableJoins(t *testing.T) {
	b := stream.NewBuilder("geo")
	countries := stream.FromGlobalTable(b, "countries", serde.String, serde.String)
	visits := stream.From(b, "visits", serde.String, serde.String) // key user, value country code
	visits.JoinGlobal(countries, func(_, code string) string { return code }, func(user, code, name string) string {
		return user + " in " + name
	}).To("named", serde.String, serde.String)
	visits.LeftJoinGlobal(countries, func(_, code string) string { return code }, func(user, code, name string, found bool) string {
		if !found {
			return user + " in ?" + code
		}
		return user + " in " + name
	}).To("left", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	require.Contains(t, topo.Describe(), "countries (topic: countries)")

	d := streamtest.New(topo, streamtest.WithPartitions("countries", 3), streamtest.WithPartitions("visits", 2))
	defer d.Close()
	cin := streamtest.Input(d, "countries", serde.String, serde.String)
	vin := streamtest.Input(d, "visits", serde.String, serde.String)
	for _, c := range [][2]string{{"fr", "France"}, {"jp", "Japan"}, {"br", "Brazil"}} {
		require.NoError(t, cin.Pipe(c[0], c[1], epoch))
	}
	require.NoError(t, vin.Pipe("ann", "jp", epoch))
	require.NoError(t, vin.Pipe("bob", "br", epoch))
	require.NoError(t, d.PipeBytes("countries", []byte("br"), nil, epoch)) // deleted
	require.NoError(t, vin.Pipe("cyd", "br", epoch))
	require.NoError(t, vin.Pipe("dan", "fr", epoch))

	values := func(topic string) []string {
		recs, err := streamtest.Output(d, topic, serde.String, serde.String).ReadAll()
		require.NoError(t, err)
		var vs []string
		for _, r := range recs {
			vs = append(vs, r.Value)
		}
		return vs
	}
	require.Equal(t, []string{"ann in Japan", "bob in Brazil", "dan in France"}, values("named"))
	require.Equal(t, []string{"ann in Japan", "bob in Brazil", "cyd in ?br", "dan in France"}, values("left"))
}

func TestGlobalTableValidation(t *testing.T) {
	b := stream.NewBuilder("app")
	stream.FromGlobalTable(b, "t", serde.String, serde.String)
	stream.From(b, "t", serde.String, serde.String).To("out", serde.String, serde.String)
	_, err := b.Build()
	require.ErrorContains(t, err, `topic "t" is both a global table and read by source-0000`)
}
