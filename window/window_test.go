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

// Each kind refuses parameters that would make no windows, or windows at
// a precision Kafka timestamps do not have.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		spec window.Spec
		want string // "" for valid
	}{
		{window.Tumbling{Size: time.Minute, Grace: 10 * time.Second}, ""},
		{window.Tumbling{}, "tumbling window size must be positive"},
		{window.Tumbling{Size: time.Minute, Grace: -time.Second}, "grace must not be negative"},
		{window.Tumbling{Size: 1500 * time.Microsecond}, "not a whole number of milliseconds"},
		{window.Hopping{Size: time.Minute, Advance: 10 * time.Second}, ""},
		{window.Hopping{Size: time.Minute, Advance: 2 * time.Minute}, "advance 2m0s is larger than its size"},
		{window.Hopping{Size: time.Minute}, "advance must be positive"},
		{window.Sliding{Difference: time.Minute}, ""},
		{window.Sliding{}, "sliding window difference must be positive"},
		{window.Session{Gap: 5 * time.Minute, Grace: time.Minute}, ""},
		{window.Session{Gap: -time.Minute}, "session gap must be positive"},
	} {
		err := tc.spec.Validate()
		if tc.want == "" {
			require.NoError(t, err, "%#v", tc.spec)
		} else {
			require.ErrorContains(t, err, tc.want, "%#v", tc.spec)
		}
	}
}

// A window closes at its end plus the grace; the end itself is outside.
func TestClosesAt(t *testing.T) {
	tw := window.Tumbling{Size: time.Minute, Grace: 10 * time.Second}
	w := tw.For(at("2026-11-25T12:00:30Z"))
	require.True(t, window.ClosesAt(tw, w).Equal(at("2026-11-25T12:01:10Z")))
	require.False(t, w.Contains(at("2026-11-25T12:01:00Z")))
	require.Equal(t, time.Minute, tw.MaxSize())
}

// A sliding window ends with its record, which it includes; records at
// most Difference apart share it.
func TestSlidingEnding(t *testing.T) {
	sw := window.Sliding{Difference: 10 * time.Second}
	w := sw.Ending(at("2026-11-25T12:00:30Z"))
	require.True(t, w.Contains(at("2026-11-25T12:00:30Z")), "its own record")
	require.True(t, w.Contains(at("2026-11-25T12:00:20Z")), "Difference before it")
	require.False(t, w.Contains(at("2026-11-25T12:00:19.999Z")))
	require.False(t, w.Contains(at("2026-11-25T12:00:30.001Z")))
}

// A record joins a session when it is within Gap of the session's first
// or last record, on either side.
func TestSessionJoins(t *testing.T) {
	sw := window.Session{Gap: 5 * time.Minute}
	s := window.Window{Start: at("2026-11-25T12:00:00Z"), End: at("2026-11-25T12:10:00.001Z")} // records 12:00 to 12:10
	for ts, want := range map[string]bool{
		"2026-11-25T11:55:00Z":     true,
		"2026-11-25T11:54:59.999Z": false,
		"2026-11-25T12:05:00Z":     true,
		"2026-11-25T12:15:00Z":     true,
		"2026-11-25T12:15:00.001Z": false,
	} {
		require.Equal(t, want, sw.Joins(s, at(ts)), ts)
	}
}

// Hopping windows before the epoch are aligned to it as well.
func TestHoppingBeforeEpoch(t *testing.T) {
	hw := window.Hopping{Size: time.Minute, Advance: 30 * time.Second}
	ws := hw.AppendFor(nil, at("1969-12-31T23:59:45Z"))
	require.Len(t, ws, 2)
	require.True(t, ws[0].Start.Equal(at("1969-12-31T23:59:00Z")), "%v", ws)
	require.True(t, ws[1].Start.Equal(at("1969-12-31T23:59:30Z")), "%v", ws)
}
