package stream_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
)

// ToStream forwards a table's deletes as tombstones, which a sink writes
// as null values.
func TestTableToStreamForwardsDeletes(t *testing.T) {
	rig := newTableRig(t, func(_ *stream.Builder, users, _ stream.Table[string, string]) stream.Table[string, string] {
		return users
	})
	rig.put(rig.users, "u1", "alice")
	rig.put(rig.users, "u1", "DEL")
	require.Equal(t, []string{"u1=alice", "u1=DEL"}, rig.read())
}

// Filter turns an update that fails the predicate into a delete of its
// key; deletes stay deletes.
func TestTableFilterTurnsFailuresIntoDeletes(t *testing.T) {
	rig := newTableRig(t, func(_ *stream.Builder, users, _ stream.Table[string, string]) stream.Table[string, string] {
		return users.Filter(func(_, name string) bool { return name != "banned" })
	})
	rig.put(rig.users, "u1", "alice")
	rig.put(rig.users, "u1", "banned")
	rig.put(rig.users, "u1", "alice")
	rig.put(rig.users, "u1", "DEL")
	require.Equal(t, []string{"u1=alice", "u1=DEL", "u1=alice", "u1=DEL"}, rig.read())
}

// MapValues maps values and keeps deletes.
func TestTableMapValues(t *testing.T) {
	rig := newTableRig(t, func(_ *stream.Builder, users, _ stream.Table[string, string]) stream.Table[string, string] {
		return users.MapValues(strings.ToUpper)
	})
	rig.put(rig.users, "u1", "alice")
	rig.put(rig.users, "u1", "DEL")
	require.Equal(t, []string{"u1=ALICE", "u1=DEL"}, rig.read())
}

// Filter and MapValues are views of their source's store: a lookup sees
// what they hold. A filtered-out key is missing for a stream-table join
// and leaves a table-table join's result.
func TestTableViewsInJoins(t *testing.T) {
	rig := newTableRig(t, func(_ *stream.Builder, users, regions stream.Table[string, string]) stream.Table[string, string] {
		active := users.Filter(func(_, name string) bool { return name != "banned" }).MapValues(strings.ToUpper)
		return regions.Join("j", active, func(_, region, name string) string { return name + "@" + region }, serde.String)
	})
	rig.put(rig.users, "u1", "alice")
	rig.put(rig.regions, "u1", "eu") // looks the view up: ALICE
	rig.put(rig.users, "u1", "banned")
	rig.put(rig.regions, "u1", "us") // looks up a filtered-out key: none
	require.Equal(t, []string{"u1=ALICE@eu", "u1=DEL"}, rig.read())

	b := stream.NewBuilder("sv")
	users := stream.FromTable(b, "users", serde.String, serde.String)
	active := users.Filter(func(_, name string) bool { return name != "banned" })
	stream.From(b, "orders", serde.String, serde.String).
		LeftJoin(active, func(_, o, name string, found bool) string { return o + " by " + show(name, found) }).
		To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "users", serde.String, serde.String)
	orders := streamtest.Input(d, "orders", serde.String, serde.String)
	require.NoError(t, in.Pipe("u1", "alice", epoch))
	require.NoError(t, orders.Pipe("u1", "o1", epoch))
	require.NoError(t, in.Pipe("u1", "banned", epoch))
	require.NoError(t, orders.Pipe("u1", "o2", epoch))
	require.Equal(t, []string{"u1:o1 by alice", "u1:o2 by -"}, values(t, streamtest.Output(d, "out", serde.String, serde.String)))
}

// A table's deletes, once a stream, look nothing up in a stream-table
// join: the tombstone is dropped, not joined with a zero value.
func TestStreamTableJoinDropsTombstones(t *testing.T) {
	b := stream.NewBuilder("st")
	regions := stream.FromTable(b, "regions", serde.String, serde.String)
	stream.FromTable(b, "users", serde.String, serde.String).ToStream().
		Join(regions, func(_, name, region string) string { return name + "@" + region }).
		To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	users := streamtest.Input(d, "users", serde.String, serde.String)
	require.NoError(t, streamtest.Input(d, "regions", serde.String, serde.String).Pipe("u1", "eu", epoch))
	require.NoError(t, users.Pipe("u1", "alice", epoch))
	require.NoError(t, users.PipeRecord(stream.Tombstone[string, string]("u1", epoch)))
	require.Equal(t, []string{"u1:alice@eu"}, values(t, streamtest.Output(d, "out", serde.String, serde.String)))
}

// A table's deletes stay tombstones through the stateless stream
// operators, whose functions never see them as values (Filter, MapValues,
// FlatMapValues) or see the zero value for the key (Map, SelectKey,
// FlatMap).
func TestStreamOperatorsKeepTombstones(t *testing.T) {
	b := stream.NewBuilder("tombs")
	var seen []string
	stream.FromTable(b, "users", serde.String, serde.String).ToStream().
		Filter(func(_, name string) bool { seen = append(seen, "filter:"+name); return name != "" }).
		MapValues(func(name string) string { seen = append(seen, "mapvalues:"+name); return strings.ToUpper(name) }).
		FlatMapValues(func(name string) []string { return []string{name} }).
		Map(func(k, v string) (string, string) { seen = append(seen, "map:"+k+"/"+v); return "user-" + k, v }).
		SelectKey(func(k, _ string) string { return k + "!" }).
		FlatMap(func(k, v string) []stream.Pair[string, string] { return []stream.Pair[string, string]{stream.KV(k, v)} }).
		To("out", serde.String, serde.String)
	_, d := newDriver(t, b)
	users := streamtest.Input(d, "users", serde.String, serde.String)
	require.NoError(t, users.Pipe("u1", "alice", at(1)))
	require.NoError(t, users.PipeRecord(stream.Tombstone[string, string]("u1", at(2))))
	got, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "user-u1!", got[0].Key)
	require.Equal(t, "ALICE", got[0].Value)
	require.False(t, got[0].Deleted)
	require.Equal(t, "user-u1!", got[1].Key)
	require.True(t, got[1].Deleted, "the delete reaches the topic as a tombstone")
	require.Equal(t, []string{"filter:alice", "mapvalues:alice", "map:u1/ALICE", "map:u1/"}, seen)
}
