package window_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/window"
)

func TestJoinWindow(t *testing.T) {
	j := window.JoinWithin(10*time.Minute, time.Minute)
	require.Equal(t, window.Join{Before: 10 * time.Minute, After: 10 * time.Minute, Grace: time.Minute}, j)
	require.NoError(t, j.Validate())
	ts := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	asym := window.Join{Before: time.Minute, After: 5 * time.Minute, Grace: 30 * time.Second}
	require.Equal(t, ts.Add(5*time.Minute+30*time.Second), asym.LeftClosesAt(ts))
	require.Equal(t, ts.Add(time.Minute+30*time.Second), asym.RightClosesAt(ts))
	require.NoError(t, window.Join{}.Validate(), "only equal timestamps join")
	require.ErrorContains(t, window.Join{Before: -time.Second}.Validate(), "join window before must not be negative")
	require.ErrorContains(t, window.Join{After: time.Microsecond}.Validate(), "not a whole number of milliseconds")
	require.ErrorContains(t, window.Join{Grace: -1}.Validate(), "grace must not be negative")
}
