package stream_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
)

// tableRig joins the tables "users" (user -> name) and "regions" (user ->
// region) into "out", as "name@region", "-" standing for a missing side.
type tableRig struct {
	t              *testing.T
	users, regions *streamtest.InputTopic[string, string]
	out            *streamtest.OutputTopic[string, string]
}

func newTableRig(t *testing.T, build func(b *stream.Builder, users, regions stream.Table[string, string]) stream.Table[string, string]) *tableRig {
	t.Helper()
	b := stream.NewBuilder("tt")
	users := stream.FromTable(b, "users", serde.String, serde.String)
	regions := stream.FromTable(b, "regions", serde.String, serde.String)
	build(b, users, regions).ToStream().To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return &tableRig{t: t, users: streamtest.Input(d, "users", serde.String, serde.String),
		regions: streamtest.Input(d, "regions", serde.String, serde.String),
		out:     streamtest.Output(d, "out", serde.String, serde.String)}
}

// put upserts key in table in (value "") or deletes it (value "DEL").
func (r *tableRig) put(in *streamtest.InputTopic[string, string], key, value string) {
	r.t.Helper()
	if value == "DEL" {
		require.NoError(r.t, in.PipeRecord(stream.Tombstone[string, string](key, epoch)))
		return
	}
	require.NoError(r.t, in.Pipe(key, value, epoch))
}

// read returns the records written since the last read, as "key=value",
// or "key=DEL" for a tombstone.
func (r *tableRig) read() []string {
	r.t.Helper()
	recs, err := r.out.ReadAll()
	require.NoError(r.t, err)
	got := []string{}
	for _, rec := range recs {
		if rec.Deleted {
			got = append(got, rec.Key+"=DEL")
		} else {
			got = append(got, fmt.Sprintf("%s=%s", rec.Key, rec.Value))
		}
	}
	return got
}

func show(v string, ok bool) string {
	if !ok {
		return "-"
	}
	return v
}

// An inner table-table join has a key while both tables do: an update on
// either side emits the new joined value, and the key's leaving the result
// emits one tombstone, not one per delete.
func TestTableJoinUpdatesAndDeletes(t *testing.T) {
	rig := newTableRig(t, func(_ *stream.Builder, users, regions stream.Table[string, string]) stream.Table[string, string] {
		return users.Join("user-regions", regions, func(_, name, region string) string { return name + "@" + region }, serde.String)
	})
	rig.put(rig.users, "u1", "alice")
	require.Equal(t, []string{}, rig.read(), "no region yet")
	rig.put(rig.regions, "u1", "eu")
	rig.put(rig.users, "u1", "alicia")
	rig.put(rig.regions, "u1", "us")
	require.Equal(t, []string{"u1=alice@eu", "u1=alicia@eu", "u1=alicia@us"}, rig.read())
	rig.put(rig.regions, "u1", "DEL")
	require.Equal(t, []string{"u1=DEL"}, rig.read())
	rig.put(rig.users, "u1", "DEL")
	rig.put(rig.regions, "u1", "DEL")
	require.Equal(t, []string{}, rig.read(), "the result was already gone")
	rig.put(rig.regions, "u2", "eu")
	rig.put(rig.users, "u2", "bob")
	rig.put(rig.users, "u2", "DEL")
	require.Equal(t, []string{"u2=bob@eu", "u2=DEL"}, rig.read())
}

// A left table-table join has every key of the left table; a delete on
// the right makes its value unmatched, a delete on the left removes it.
func TestTableLeftJoin(t *testing.T) {
	rig := newTableRig(t, func(_ *stream.Builder, users, regions stream.Table[string, string]) stream.Table[string, string] {
		return users.LeftJoin("user-regions", regions, func(_, name, region string, found bool) string { return name + "@" + show(region, found) }, serde.String)
	})
	rig.put(rig.users, "u1", "alice")
	rig.put(rig.regions, "u1", "eu")
	rig.put(rig.regions, "u1", "DEL")
	rig.put(rig.regions, "u9", "us") // no such user: nothing
	rig.put(rig.users, "u1", "DEL")
	require.Equal(t, []string{"u1=alice@-", "u1=alice@eu", "u1=alice@-", "u1=DEL"}, rig.read())
}

// An outer table-table join has every key of either table, until it is in
// neither.
func TestTableOuterJoin(t *testing.T) {
	rig := newTableRig(t, func(_ *stream.Builder, users, regions stream.Table[string, string]) stream.Table[string, string] {
		return users.OuterJoin("user-regions", regions, func(_, name string, hasName bool, region string, hasRegion bool) string {
			return show(name, hasName) + "@" + show(region, hasRegion)
		}, serde.String)
	})
	rig.put(rig.regions, "u2", "us")
	rig.put(rig.users, "u2", "bob")
	rig.put(rig.users, "u2", "DEL")
	rig.put(rig.regions, "u2", "DEL")
	rig.put(rig.regions, "u2", "DEL")
	require.Equal(t, []string{"u2=-@us", "u2=bob@us", "u2=-@us", "u2=DEL"}, rig.read())
}

// The join's result is a table of its own: a stream joins it, and it
// joins a table again.
func TestTableJoinResultIsMaterialized(t *testing.T) {
	b := stream.NewBuilder("tm")
	users := stream.FromTable(b, "users", serde.String, serde.String)
	regions := stream.FromTable(b, "regions", serde.String, serde.String)
	tiers := stream.FromTable(b, "tiers", serde.String, serde.String)
	profile := users.Join("ur", regions, func(_, n, r string) string { return n + "@" + r }, serde.String).
		Join("urt", tiers, func(_, ur, tier string) string { return ur + "/" + tier }, serde.String)
	stream.From(b, "clicks", serde.String, serde.String).
		Join(profile, func(_, click, p string) string { return click + " by " + p }).
		To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	for topic, v := range map[string]string{"users": "alice", "regions": "eu", "tiers": "gold"} {
		require.NoError(t, streamtest.Input(d, topic, serde.String, serde.String).Pipe("u1", v, epoch))
	}
	clicks := streamtest.Input(d, "clicks", serde.String, serde.String)
	require.NoError(t, clicks.Pipe("u1", "home", epoch))
	require.NoError(t, clicks.Pipe("u2", "home", epoch))
	require.Equal(t, []string{"u1:home by alice@eu/gold"}, values(t, streamtest.Output(d, "out", serde.String, serde.String)))
}

// A table-table join needs a name and a value serde.
func TestTableJoinValidation(t *testing.T) {
	cat := func(_, a, b string) string { return a + b }
	for want, add := range map[string]func(l, r stream.Table[string, string]){
		"tablejoin needs a name": func(l, r stream.Table[string, string]) { l.Join("", r, cat, serde.String) },
		"the value serde is nil": func(l, r stream.Table[string, string]) { l.Join("j", r, cat, nil) },
	} {
		b := stream.NewBuilder("v")
		add(stream.FromTable(b, "l", serde.String, serde.String), stream.FromTable(b, "r", serde.String, serde.String))
		_, err := b.Build()
		require.ErrorContains(t, err, want)
	}
}
