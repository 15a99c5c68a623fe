package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
)

// querier is what the store handler asks: a *txn.Worker.
type querier interface {
	QueryableStores() []topology.QueryableStore
	QueryKey(ctx context.Context, store, key string) (txn.QueryResult, error)
	QueryWindows(ctx context.Context, store, key string, from, to time.Time) (txn.QueryResult, error)
}

// queryTimeout bounds how long a query waits for the worker's loop, which
// answers between batches.
const queryTimeout = 10 * time.Second

// Window queries without from or to range over every window: the
// bounds are the earliest and latest times a window key encodes.
var (
	earliest = time.UnixMilli(-1 << 62)
	latest   = time.UnixMilli(1 << 62)
)

// queryAnswer is the JSON body of every answer but a found value.
type queryAnswer struct {
	Status    string `json:"status"`
	Store     string `json:"store"`
	Key       string `json:"key"`
	Partition *int32 `json:"partition,omitempty"`
	Owner     string `json:"owner,omitempty"`
	Instance  string `json:"owner_instance,omitempty"`
	Message   string `json:"message,omitempty"`
}

// storesHandler serves GET /stores/{store}/{key} (see Handler).
func storesHandler(q querier) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		store, key := r.PathValue("store"), r.PathValue("key")
		ans := queryAnswer{Store: store, Key: key}
		if key == "" {
			writeAnswer(rw, http.StatusBadRequest, ans, "bad request", "no key: ask GET /stores/{store}/{key}")
			return
		}
		params := r.URL.Query()
		stores := q.QueryableStores()
		window := false
		if i := slices.IndexFunc(stores, func(s topology.QueryableStore) bool { return s.Name == store }); i >= 0 {
			window = stores[i].Kind == topology.WindowStore
		}
		from, to := earliest, latest
		var err error
		for _, p := range []struct {
			name string
			t    *time.Time
		}{{"from", &from}, {"to", &to}} {
			v := params.Get(p.name)
			switch {
			case v == "":
			case !window:
				writeAnswer(rw, http.StatusBadRequest, ans, "bad request", fmt.Sprintf("store %s is no window store: it takes no %s", store, p.name))
				return
			default:
				if *p.t, err = parseTime(v); err != nil {
					writeAnswer(rw, http.StatusBadRequest, ans, "bad request", fmt.Sprintf("%s=%q: %v", p.name, v, err))
					return
				}
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
		defer cancel()
		var res txn.QueryResult
		if window {
			res, err = q.QueryWindows(ctx, store, key, from, to)
		} else {
			res, err = q.QueryKey(ctx, store, key)
		}
		if res.Partition >= 0 {
			ans.Partition = &res.Partition
		}
		switch {
		case errors.Is(err, txn.ErrBadQuery):
			writeAnswer(rw, http.StatusBadRequest, ans, "bad request", err.Error())
		case errors.Is(err, context.DeadlineExceeded):
			writeAnswer(rw, http.StatusServiceUnavailable, ans, "not ready", err.Error())
		case err != nil:
			writeAnswer(rw, http.StatusInternalServerError, ans, "error", err.Error())
		default:
			writeResult(rw, r, res, ans)
		}
	}
}

// writeResult writes the answer a query's result calls for.
func writeResult(rw http.ResponseWriter, r *http.Request, res txn.QueryResult, ans queryAnswer) {
	switch res.Status {
	case txn.QueryFound:
		body := []byte(res.Value)
		if res.Windows != nil { // a window store's, maybe empty
			body, _ = json.Marshal(res.Windows)
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusOK)
		rw.Write(append(body, '\n'))
	case txn.QueryAbsent:
		writeAnswer(rw, http.StatusNotFound, ans, "absent", fmt.Sprintf("store %s has no value for key %q", ans.Store, ans.Key))
	case txn.QueryUnknownStore:
		writeAnswer(rw, http.StatusNotFound, ans, "unknown store", res.Why)
	case txn.QueryNotLocal:
		ans.Owner, ans.Instance = res.Owner, res.OwnerInstance
		if res.Owner == "" {
			writeAnswer(rw, http.StatusServiceUnavailable, ans, "not local", res.Why)
			return
		}
		loc := (&url.URL{Scheme: "http", Host: res.Owner,
			Path:     "/stores/" + ans.Store + "/" + ans.Key,
			RawPath:  "/stores/" + url.PathEscape(ans.Store) + "/" + url.PathEscape(ans.Key),
			RawQuery: r.URL.RawQuery}).String()
		rw.Header().Set("Location", loc)
		writeAnswer(rw, http.StatusTemporaryRedirect, ans, "not local", "another worker holds the key: "+loc)
	default:
		rw.Header().Set("Retry-After", "1")
		writeAnswer(rw, http.StatusServiceUnavailable, ans, "not ready", res.Why)
	}
}

// writeAnswer writes ans as JSON with status code and message msg.
func writeAnswer(rw http.ResponseWriter, code int, ans queryAnswer, status, msg string) {
	ans.Status, ans.Message = status, msg
	b, _ := json.Marshal(ans)
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	rw.Write(append(b, '\n'))
}

// parseTime reads a window query's bound: milliseconds since the Unix
// epoch, or an RFC 3339 time.
func parseTime(v string) (time.Time, error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < -1<<62 || ms > 1<<62 {
			return time.Time{}, errors.New("out of range")
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errors.New("want milliseconds since the Unix epoch or an RFC 3339 time (2026-01-02T15:04:05Z)")
	}
	return t, nil
}
