package service

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/window"
)

// countsApp counts the records of each key of "in", in all ("counts")
// and per minute ("per-minute", windows that close an hour late), and
// keeps the table "prices" (a source table: its topic is its
// changelog).
func countsApp(appID string) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	in := stream.From(b, "in", serde.String, serde.Int64)
	in.GroupByKey(serde.String, serde.Int64).Count("counts").ToStream().To("out", serde.String, serde.Int64)
	stream.WindowedBy(in.GroupByKey(serde.String, serde.Int64), window.Tumbling{Size: time.Minute, Grace: time.Hour}).Count("per-minute")
	stream.FromTable(b, "prices", serde.String, serde.Int64)
	return b.Build()
}

// queryWorker is a worker with its HTTP server on the address it
// advertises.
type queryWorker struct {
	w    *txn.Worker
	addr string
}

// startQueryWorker runs worker instance of topo with its handler served
// on a port of its own, advertised to the group, until the test ends.
func startQueryWorker(t *testing.T, ctx context.Context, topo *stream.Topology, brokers []string, instance string, log *txntest.SyncBuffer) queryWorker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	w, err := txn.NewWorker(topo, txn.Config{Brokers: brokers, Instance: instance, StateDir: t.TempDir(),
		SessionTimeout: 3 * time.Second, AdvertiseAddr: ln.Addr().String(), Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(log, nil)).With("test_worker", instance)})
	require.NoError(t, err)
	srv := &http.Server{Handler: Handler(w, reg)}
	go srv.Serve(ln)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
		srv.Close()
	})
	return queryWorker{w: w, addr: ln.Addr().String()}
}

// get asks url with client, and returns the status code, the Location
// header and the body.
func get(t *testing.T, client *http.Client, url string) (int, string, string) {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// Two workers of a counting app, each serving queries on the address it
// advertises: once both are ready and have processed the input, a query
// of either answers every key, the keys of its own tasks with their
// value (200), the others' with a redirect to the worker that holds them
// (307), which answers with the value when followed; the second worker
// opens the tasks it takes over for the queries, before any record
// arrives, restoring what the first wrote (the aggregates from their
// changelogs, the table from its source topic, up to the group's
// committed offset). A key never seen is absent (404) on its owner, and
// a redirect leads there. Window stores answer a key's windows.
func TestQueriesAcrossTwoWorkers(t *testing.T) {
	const keys = 30
	_, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	brokers := []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, brokers, 4, "in", "out", "prices"))
	minute := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	want := map[string]int{}
	for i := range keys {
		key := "k" + strconv.Itoa(i)
		want[key] = i%3 + 1
		for j := range want[key] {
			cl.Produce(ctx, &kgo.Record{Topic: "in", Key: []byte(key), Value: binary.BigEndian.AppendUint64(nil, uint64(j)), Timestamp: minute.Add(time.Duration(j) * time.Second)}, nil)
		}
	}
	const prices = 12
	for v := range 3 { // the last version of each price is 2
		for i := range prices {
			cl.Produce(ctx, &kgo.Record{Topic: "prices", Key: []byte("p" + strconv.Itoa(i)), Value: binary.BigEndian.AppendUint64(nil, uint64(v))}, nil)
		}
	}
	require.NoError(t, cl.Flush(ctx))

	topo, err := countsApp("queries")
	require.NoError(t, err)
	var log txntest.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Log(log.String())
		}
	})
	noFollow := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	url := func(w queryWorker, store, key string) string {
		return "http://" + w.addr + "/stores/" + store + "/" + key
	}
	// The keys each store must answer, with their values.
	answers := map[string]map[string]int{"counts": want, "prices": {}}
	for i := range prices {
		answers["prices"]["p"+strconv.Itoa(i)] = 2
	}
	// waitAnswers waits until w1 answers every key of both stores
	// right, itself or through w2 as many times as redirects wants, and
	// returns which keys of counts it answered itself.
	var w1, w2 queryWorker
	waitAnswers := func(redirects func(int) bool) map[string]bool {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			local := map[string]bool{}
			right, redirected, all := 0, 0, 0
			for store, values := range answers {
				for key, n := range values {
					all++
					code, loc, body := get(t, noFollow, url(w1, store, key))
					if code == http.StatusTemporaryRedirect {
						require.Equal(t, url(w2, store, key), loc, "the redirect goes to the other worker's advertised address")
						redirected++
						code, loc, body = get(t, noFollow, loc)
						require.NotEqual(t, http.StatusTemporaryRedirect, code, "w2 sends %s back: %s", key, loc)
					} else if code == http.StatusOK && store == "counts" {
						local[key] = true
					}
					if code == http.StatusOK && body == fmt.Sprintln(n) {
						right++
					}
				}
			}
			if right == all && redirects(redirected) {
				return local
			}
			require.True(t, time.Now().Before(deadline), "after a minute, %d of %d keys answer right, %d through w2", right, all, redirected)
			time.Sleep(20 * time.Millisecond) // polling the workers' answers, as a probe would
		}
	}
	// w1 alone holds every task, and processes the input.
	w1 = startQueryWorker(t, ctx, topo, brokers, "w1", &log)
	waitAnswers(func(n int) bool { return n == 0 })
	// w2 joins, takes tasks over with no record to process: it opens
	// them when they are assigned, restoring what w1 wrote.
	w2 = startQueryWorker(t, ctx, topo, brokers, "w2", &log)
	local := waitAnswers(func(n int) bool { return n > 0 && n < keys+prices })
	require.Regexp(t, `msg="task restoring"[^\n]*test_worker=w2|test_worker=w2[^\n]*msg="task restoring"`, log.String())

	var mine, theirs string // a key w1 holds, one w2 holds
	for key := range want {
		if local[key] {
			mine = key
		} else {
			theirs = key
		}
	}
	code, loc, body := get(t, noFollow, url(w1, "counts", mine))
	require.Equal(t, http.StatusOK, code, body)
	require.Empty(t, loc)
	require.JSONEq(t, strconv.Itoa(want[mine]), body, "a local hit")
	code, loc, body = get(t, noFollow, url(w1, "counts", theirs))
	require.Equal(t, http.StatusTemporaryRedirect, code, body)
	require.Equal(t, url(w2, "counts", theirs), loc)
	var ans queryAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	require.Equal(t, "w2", ans.Instance)
	code, _, body = get(t, http.DefaultClient, url(w1, "counts", theirs))
	require.Equal(t, http.StatusOK, code, "followed: %s", body)
	require.JSONEq(t, strconv.Itoa(want[theirs]), body)

	// Keys never seen: absent on their owner, whichever it is.
	absent := map[bool]bool{}
	for i := 0; len(absent) < 2; i++ {
		require.Less(t, i, 100, "100 keys and none on one of the workers")
		key := "never-" + strconv.Itoa(i)
		code, loc, body := get(t, noFollow, url(w1, "counts", key))
		absent[code == http.StatusNotFound] = true
		if code == http.StatusTemporaryRedirect {
			code, _, body = get(t, noFollow, loc)
		}
		require.Equal(t, http.StatusNotFound, code, "%s: %s", key, body)
		require.NoError(t, json.Unmarshal([]byte(body), &ans))
		require.Equal(t, "absent", ans.Status)
	}
	code, _, body = get(t, noFollow, url(w1, "nope", mine))
	require.Equal(t, http.StatusNotFound, code, body)
	require.Contains(t, body, "the queryable stores are counts, per-minute, prices")

	// The window store: the key's minute, followed to its owner.
	for _, key := range []string{mine, theirs} {
		code, _, body = get(t, http.DefaultClient, url(w1, "per-minute", key)+"?from="+strconv.FormatInt(minute.UnixMilli(), 10)+"&to="+minute.Add(time.Hour).Format(time.RFC3339))
		require.Equal(t, http.StatusOK, code, body)
		require.JSONEq(t, fmt.Sprintf(`[{"start":"2026-01-01T10:00:00Z","end":"2026-01-01T10:01:00Z","value":%d}]`, want[key]), body)
		code, _, body = get(t, http.DefaultClient, url(w1, "per-minute", key)+"?from="+strconv.FormatInt(minute.Add(time.Minute).UnixMilli(), 10))
		require.Equal(t, http.StatusOK, code, body)
		require.JSONEq(t, `[]`, body, "no window starts after 10:01")
	}

	// The Go API answers the same.
	res, err := w2.w.QueryKey(ctx, "counts", theirs)
	require.NoError(t, err)
	require.Equal(t, txn.QueryFound, res.Status)
	require.JSONEq(t, strconv.Itoa(want[theirs]), string(res.Value))
	res, err = w2.w.QueryKey(ctx, "counts", mine)
	require.NoError(t, err)
	require.Equal(t, txn.QueryNotLocal, res.Status)
	require.Equal(t, w1.addr, res.Owner)
	require.Equal(t, "w1", res.OwnerInstance)
}
