package stream_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/stretchr/testify/require"
)

// headerList returns a record's headers as key=value strings, in order.
func headerList(h stream.Headers) []string {
	list := []string{}
	for k, v := range h.All() {
		list = append(list, k+"="+string(v))
	}
	return list
}

func TestNewRecord(t *testing.T) {
	r := stream.NewRecord("k", int64(7), at(1))
	require.Equal(t, "k", r.Key())
	require.Equal(t, int64(7), r.Value())
	require.Equal(t, at(1), r.Timestamp())
	require.Zero(t, r.Headers().Len())
	require.Equal(t, stream.Origin{}, r.Origin())
}

func TestRecordWithReturnsCopies(t *testing.T) {
	orig := stream.NewRecord("k", "v", at(1)).WithHeader("h", []byte("1"))
	check := func(t *testing.T) {
		t.Helper()
		require.Equal(t, "k", orig.Key())
		require.Equal(t, "v", orig.Value())
		require.Equal(t, at(1), orig.Timestamp())
		require.Equal(t, []string{"h=1"}, headerList(orig.Headers()))
	}
	tests := []struct {
		name  string
		apply func() any
		want  any
	}{
		{
			name: "WithKey changes the key type",
			apply: func() any {
				r := orig.WithKey(int64(5))
				return []any{r.Key(), r.Value(), r.Timestamp(), headerList(r.Headers())}
			},
			want: []any{int64(5), "v", at(1), []string{"h=1"}},
		},
		{
			name: "WithValue changes the value type",
			apply: func() any {
				r := orig.WithValue(3.5)
				return []any{r.Key(), r.Value(), r.Timestamp(), headerList(r.Headers())}
			},
			want: []any{"k", 3.5, at(1), []string{"h=1"}},
		},
		{
			name: "WithTimestamp",
			apply: func() any {
				r := orig.WithTimestamp(at(9))
				return []any{r.Key(), r.Value(), r.Timestamp(), headerList(r.Headers())}
			},
			want: []any{"k", "v", at(9), []string{"h=1"}},
		},
		{
			name: "WithHeader appends, keeping same-named headers",
			apply: func() any {
				r := orig.WithHeader("h", []byte("2")).WithHeader("x", nil)
				return []any{r.Key(), r.Value(), r.Timestamp(), headerList(r.Headers())}
			},
			want: []any{"k", "v", at(1), []string{"h=1", "h=2", "x="}},
		},
		{
			name: "chained With calls",
			apply: func() any {
				r := orig.WithValue(1).WithKey(true).WithTimestamp(time.Time{}).WithHeader("y", []byte("z"))
				return []any{r.Key(), r.Value(), r.Timestamp(), headerList(r.Headers())}
			},
			want: []any{true, 1, time.Time{}, []string{"h=1", "y=z"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.apply())
			check(t)
		})
	}
}

// Two records derived from one must not share header storage: appending to
// one must never show up in the other.
func TestWithHeaderDoesNotAlias(t *testing.T) {
	base := stream.NewRecord("k", "v", at(1)).WithHeader("a", []byte("1"))
	left := base.WithHeader("b", []byte("left"))
	right := base.WithHeader("b", []byte("right"))
	require.Equal(t, []string{"a=1"}, headerList(base.Headers()))
	require.Equal(t, []string{"a=1", "b=left"}, headerList(left.Headers()))
	require.Equal(t, []string{"a=1", "b=right"}, headerList(right.Headers()))

	// A longer chain, where amortized growth would leave spare capacity.
	r := base
	var kept []stream.Record[string, string]
	for i := range 10 {
		r = r.WithHeader("n", []byte{byte('0' + i)})
		kept = append(kept, r)
	}
	for i, k := range kept {
		require.Equal(t, 2+i, k.Headers().Len())
		v, ok := k.Headers().Get("n")
		require.True(t, ok)
		require.Equal(t, []byte{byte('0' + i)}, v, "record %d sees a later header", i)
	}
	fork := kept[4].WithHeader("n", []byte("fork"))
	v, _ := kept[5].Headers().Get("n")
	require.Equal(t, []byte("5"), v)
	v, _ = fork.Headers().Get("n")
	require.Equal(t, []byte("fork"), v)
}

func TestHeaders(t *testing.T) {
	r := stream.NewRecord("k", "v", at(1)).
		WithHeader("a", []byte("1")).
		WithHeader("b", []byte("2")).
		WithHeader("a", []byte("3")).
		WithHeader("empty", []byte{}).
		WithHeader("nil", nil)
	h := r.Headers()

	tests := []struct {
		key    string
		want   []byte
		wantOK bool
	}{
		{"a", []byte("3"), true}, // the last one wins
		{"b", []byte("2"), true},
		{"empty", []byte{}, true},
		{"nil", nil, true},
		{"missing", nil, false},
		{"A", nil, false}, // case-sensitive
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := h.Get(tt.key)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("Len counts duplicates", func(t *testing.T) {
		require.Equal(t, 5, h.Len())
	})
	t.Run("All iterates in order, duplicates included", func(t *testing.T) {
		require.Equal(t, []string{"a=1", "b=2", "a=3", "empty=", "nil="}, headerList(h))
	})
	t.Run("All stops when the loop breaks", func(t *testing.T) {
		var seen []string
		for k := range h.All() {
			seen = append(seen, k)
			if len(seen) == 2 {
				break
			}
		}
		require.Equal(t, []string{"a", "b"}, seen)
	})
	t.Run("zero value is empty", func(t *testing.T) {
		var zero stream.Headers
		require.Zero(t, zero.Len())
		_, ok := zero.Get("a")
		require.False(t, ok)
		require.Empty(t, headerList(zero))
	})
}

func TestKV(t *testing.T) {
	require.Equal(t, stream.Pair[string, int]{Key: "a", Value: 1}, stream.KV("a", 1))
}
