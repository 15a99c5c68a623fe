package service

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluicehq/sluice/txn"
)

// Handler serves a worker's metrics and probes, for a program that runs
// its own HTTP server (Run serves it on --metrics-addr):
//
//   - /metrics: reg's metrics, in Prometheus' formats;
//   - /healthz and /livez: 200 "ok: N tasks" while w.Health().Live, else
//     503 with what keeps it from being live;
//   - /readyz: the same for Live and Ready;
//   - GET /stores/{store}/{key}: an interactive query (Worker.QueryKey)
//     of the key, written as text (a string key as it is, URL-escaped),
//     in a key-value store: 200 with the value as JSON; 404 when the key
//     has none, and for a store the topology has not (or cannot query);
//     307 to http://OWNER/stores/{store}/{key} when another worker holds
//     the key (OWNER: its --advertise-addr); 503 while the worker cannot
//     tell (not running, joining its group, restoring, rebalancing; with
//     Retry-After), and when the owner advertises no address; 400 for a
//     key the store's key serde cannot read, or a bad time range. A
//     window store's query (Worker.QueryWindows) takes ?from=&to=
//     (milliseconds since the epoch, or RFC 3339; default: every window)
//     and answers a JSON list of {"start", "end", "value"}, the windows
//     whose start is in [from, to). Every answer but a 200 is a JSON
//     object whose "status" and "message" say what happened.
//
// It is safe for concurrent use, before, during and after w.Run.
// ServingMessage is the message of the info log line with which a worker
// says where it serves its metrics, probes and queries (attribute addr,
// the address it listens on: with a port of 0, the one it got). Programs
// that start workers and read their logs, as runner demo does, look for
// it.
const ServingMessage = "serving metrics, probes and queries"

func Handler(w *txn.Worker, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", probe(w, func(h txn.Health) bool { return h.Live }))
	mux.HandleFunc("/livez", probe(w, func(h txn.Health) bool { return h.Live }))
	mux.HandleFunc("/readyz", probe(w, func(h txn.Health) bool { return h.Live && h.Ready }))
	mux.HandleFunc("GET /stores/{store}/{key...}", storesHandler(w))
	return mux
}

// probe answers 200 "ok" when ok(w.Health()), else 503 with what keeps
// the worker from it.
func probe(w *txn.Worker, ok func(txn.Health) bool) http.HandlerFunc {
	return func(rw http.ResponseWriter, _ *http.Request) {
		h := w.Health()
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok(h) {
			rw.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(rw, "%s\n", h.Why)
			return
		}
		fmt.Fprintf(rw, "ok: %d tasks\n", h.Tasks)
	}
}

// serve serves h on addr until the returned function is called. An
// address that cannot be bound is a warning, not a failure: several local
// workers share a host.
func serve(addr string, h http.Handler, log *slog.Logger) (stop func()) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("metrics, probes and queries off: cannot listen", "addr", addr, "err", err)
		return func() {}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	log.Info(ServingMessage, "addr", ln.Addr().String())
	return func() {
		srv.Close()
		<-done
	}
}
