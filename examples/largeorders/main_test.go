package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/txn/service"
	"github.com/stretchr/testify/require"
)

// The large orders, and only they, come out keyed by customer; a record
// that is not JSON goes to the DLQ.
func TestLargeOrders(t *testing.T) {
	topo, err := build("large-orders", "orders", "large", 100)
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	ts := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	in := streamtest.Input(d, "orders", serde.String, serde.JSON[Order]())
	require.NoError(t, in.Pipe("o1", Order{ID: "o1", CustomerID: "c1", Cents: 100}, ts))
	require.NoError(t, in.Pipe("o2", Order{ID: "o2", CustomerID: "c2", Cents: 99}, ts))
	require.NoError(t, d.PipeBytes("orders", []byte("o3"), []byte("not json"), ts))
	out, err := streamtest.Output(d, "large", serde.String, serde.JSON[Order]()).ReadAll()
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, "c1", out[0].Key)
	require.Equal(t, "o1", out[0].Value.ID)
	dead, err := d.DLQ().ReadAll()
	require.NoError(t, err)
	require.Len(t, dead, 1)
}

// The program's own flags are settings like the worker's: --min-cents
// from the command line, --orders from the environment.
func TestSettings(t *testing.T) {
	t.Setenv("SLUICE_ORDERS", "shop-orders")
	var out strings.Builder
	require.NoError(t, service.Run(t.Context(), app, []string{"--instance", "w1", "--min-cents", "5", "--print-config"}, &out, io.Discard))
	require.Contains(t, out.String(), "app-id: large-orders # default\n")
	require.Contains(t, out.String(), "min-cents: \"5\" # flag\n")
	require.Contains(t, out.String(), "orders: shop-orders # SLUICE_ORDERS\n")
}
