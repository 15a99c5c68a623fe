package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
)

// fakeQuerier answers every query with res and err, and keeps what it
// was asked.
type fakeQuerier struct {
	res      txn.QueryResult
	err      error
	store    string
	key      string
	from, to time.Time
	window   bool
}

func (f *fakeQuerier) QueryableStores() []topology.QueryableStore {
	return []topology.QueryableStore{{Name: "counts", Kind: topology.KeyValueStore}, {Name: "per-minute", Kind: topology.WindowStore}}
}

func (f *fakeQuerier) QueryKey(_ context.Context, store, key string) (txn.QueryResult, error) {
	f.store, f.key, f.window = store, key, false
	return f.res, f.err
}

func (f *fakeQuerier) QueryWindows(_ context.Context, store, key string, from, to time.Time) (txn.QueryResult, error) {
	f.store, f.key, f.from, f.to, f.window = store, key, from, to, true
	return f.res, f.err
}

// The store handler answers each kind of result with its status code and
// body: 200 and the value, 404 absent or unknown store, 307 to the
// owner, 503 not ready or an owner without address, 400 for a bad
// query; window stores take from and to, in milliseconds or RFC 3339.
func TestStoresHandlerCodes(t *testing.T) {
	minute := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		path     string
		res      txn.QueryResult
		err      error
		code     int
		body     string // JSON, compared as such; "" when bodyHas says
		status   string // the answer's "status"
		location string
		check    func(t *testing.T, f *fakeQuerier)
	}{
		{name: "found", path: "/stores/counts/a", res: txn.QueryResult{Status: txn.QueryFound, Partition: 1, Value: json.RawMessage(`3`)},
			code: 200, body: `3`,
			check: func(t *testing.T, f *fakeQuerier) { require.Equal(t, "a", f.key) }},
		{name: "an escaped key", path: "/stores/counts/a%2Fb%20c", res: txn.QueryResult{Status: txn.QueryFound, Value: json.RawMessage(`{"n":1}`)},
			code: 200, body: `{"n":1}`,
			check: func(t *testing.T, f *fakeQuerier) { require.Equal(t, "a/b c", f.key) }},
		{name: "absent", path: "/stores/counts/zz", res: txn.QueryResult{Status: txn.QueryAbsent, Partition: 2},
			code: 404, status: "absent"},
		{name: "unknown store", path: "/stores/nope/a", res: txn.QueryResult{Status: txn.QueryUnknownStore, Partition: -1, Why: "no store nope: the queryable stores are counts, per-minute"},
			code: 404, status: "unknown store"},
		{name: "not local", path: "/stores/counts/b", res: txn.QueryResult{Status: txn.QueryNotLocal, Partition: 0, Owner: "w2.example:9100", OwnerInstance: "w2"},
			code: 307, status: "not local", location: "http://w2.example:9100/stores/counts/b"},
		{name: "not local, escaped, with a range", path: "/stores/per-minute/a%2Fb?from=0&to=60000", res: txn.QueryResult{Status: txn.QueryNotLocal, Owner: "w2:9100"},
			code: 307, status: "not local", location: "http://w2:9100/stores/per-minute/a%2Fb?from=0&to=60000"},
		{name: "owner without address", path: "/stores/counts/b", res: txn.QueryResult{Status: txn.QueryNotLocal, OwnerInstance: "w2", Why: "advertises no address"},
			code: 503, status: "not local"},
		{name: "not ready", path: "/stores/counts/a", res: txn.QueryResult{Status: txn.QueryNotReady, Partition: -1, Why: "joining the group"},
			code: 503, status: "not ready"},
		{name: "loop too late", path: "/stores/counts/a", err: fmt.Errorf("txn: query: %w", context.DeadlineExceeded),
			code: 503, status: "not ready"},
		{name: "bad key", path: "/stores/counts/a", err: fmt.Errorf("%w: key", txn.ErrBadQuery),
			code: 400, status: "bad request"},
		{name: "failed", path: "/stores/counts/a", err: errors.New("state: get: disk on fire"),
			code: 500, status: "error"},
		{name: "no key", path: "/stores/counts/", code: 400, status: "bad request"},
		{name: "a range on a key-value store", path: "/stores/counts/a?from=1", code: 400, status: "bad request"},
		{name: "a bad range", path: "/stores/per-minute/a?from=yesterday", code: 400, status: "bad request"},
		{name: "windows", path: "/stores/per-minute/a?from=" + fmt.Sprint(minute.UnixMilli()) + "&to=2026-01-01T11:00:00Z",
			res:  txn.QueryResult{Status: txn.QueryFound, Windows: []txn.QueryWindow{{Start: minute, End: minute.Add(time.Minute), Value: json.RawMessage(`2`)}}},
			code: 200, body: `[{"start":"2026-01-01T10:00:00Z","end":"2026-01-01T10:01:00Z","value":2}]`,
			check: func(t *testing.T, f *fakeQuerier) {
				require.True(t, f.window)
				require.True(t, f.from.Equal(minute), "%v", f.from)
				require.True(t, f.to.Equal(minute.Add(time.Hour)), "%v", f.to)
			}},
		{name: "no windows, every window", path: "/stores/per-minute/a", res: txn.QueryResult{Status: txn.QueryFound, Windows: []txn.QueryWindow{}},
			code: 200, body: `[]`,
			check: func(t *testing.T, f *fakeQuerier) {
				require.True(t, f.from.Before(time.Unix(0, 0)))
				require.True(t, f.to.After(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeQuerier{res: tt.res, err: tt.err}
			mux := http.NewServeMux()
			mux.HandleFunc("GET /stores/{store}/{key...}", storesHandler(f))
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			body, _ := io.ReadAll(rec.Body)
			require.Equal(t, tt.code, rec.Code, "%s", body)
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			if tt.body != "" {
				require.JSONEq(t, tt.body, string(body))
			} else {
				var ans queryAnswer
				require.NoError(t, json.Unmarshal(body, &ans), "%s", body)
				require.Equal(t, tt.status, ans.Status, "%s", body)
				require.NotEmpty(t, ans.Message, "%s", body)
			}
			require.Equal(t, tt.location, rec.Header().Get("Location"))
			if tt.code == 503 && tt.status == "not ready" && tt.err == nil {
				require.Equal(t, "1", rec.Header().Get("Retry-After"))
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}
