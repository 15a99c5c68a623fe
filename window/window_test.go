package window_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/window"
	"github.com/stretchr/testify/require"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestTumbling(t *testing.T) {
	tw := window.Tumbling{Size: time.Minute}
	for _, tc := range []struct{ ts, start string }{
		{"2026-11-25T12:00:00Z", "2026-11-25T12:00:00Z"},
		{"2026-11-25T12:00:59.999Z", "2026-11-25T12:00:00Z"},
		{"2026-11-25T12:01:00Z", "2026-11-25T12:01:00Z"},
		{"1969-12-31T23:59:30Z", "1969-12-31T23:59:00Z"},
	} {
		w := tw.For(at(tc.ts))
		require.True(t, w.Start.Equal(at(tc.start)), "%s: got %s", tc.ts, w)
		require.Equal(t, time.Minute, w.End.Sub(w.Start))
		require.True(t, w.Contains(at(tc.ts)))
	}
}

func TestHopping(t *testing.T) {
	hw := window.Hopping{Size: 10 * time.Minute, Advance: 5 * time.Minute}
	ws := hw.For(at("2026-11-25T12:07:00Z"))
	require.Len(t, ws, 2)
	require.True(t, ws[0].Start.Equal(at("2026-11-25T12:00:00Z")), "%v", ws)
	require.True(t, ws[1].Start.Equal(at("2026-11-25T12:05:00Z")), "%v", ws)
	edge := hw.For(at("2026-11-25T12:10:00Z"))
	require.Len(t, edge, 2)
	require.True(t, edge[0].Start.Equal(at("2026-11-25T12:05:00Z")), "the end is exclusive: %v", edge)
}
