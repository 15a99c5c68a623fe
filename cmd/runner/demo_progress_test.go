package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lockedBuilder is a strings.Builder safe for the progress's goroutines.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// metricsServer serves a worker's /metrics with the given counts.
func metricsServer(t *testing.T, processed, committed, restored int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/metrics", r.URL.Path)
		fmt.Fprintf(w, `# HELP sluice_records_processed_total Input records run through the topology.
# TYPE sluice_records_processed_total counter
sluice_records_processed_total{app="dedup",instance="w1"} %d
sluice_transactions_committed_total{app="dedup",instance="w1"} %d
sluice_transactions_aborted_total{app="dedup",instance="w1",reason="rebalance"} 1
sluice_transactions_aborted_total{app="dedup",instance="w1",reason="new_task"} 2
sluice_restore_duration_seconds_bucket{app="dedup",instance="w1",le="+Inf"} 1
sluice_restore_duration_seconds_count{app="dedup",instance="w1"} 1
sluice_records_restored_total{app="dedup",instance="w1"} %d
go_goroutines 42
`, processed, committed, restored)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// The totals add up a worker's processes: what a SIGKILLed process did
// (its last scrape) stays counted after its restart, and a late word
// from the old process does not replace the new one's address.
func TestDemoProgressCarriesKilledWorkers(t *testing.T) {
	var out lockedBuilder
	p := newDemoProgress(&out, "dedup", "events", 100)
	defer p.finish()
	for range 60 {
		p.acked()
	}

	gen := p.started("w1")
	old := metricsServer(t, 500, 7, 0)
	p.listening("w1", gen, old)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n, err := p.waitCommitted(ctx, "w1", 5, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, 7, n)

	p.retire("w1")
	p.crashed()
	p.listening("w1", gen, old) // the killed process's log, read late
	gen2 := p.started("w1")
	require.NotEqual(t, gen, gen2)
	p.listening("w1", gen2, metricsServer(t, 30, 2, 40))

	p.started("w2") // never says where it listens: counts nothing
	p.finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	require.Contains(t, last, "] done: 60/100 events in | processed 530 | transactions 9 committed, 6 aborted | crashes 1 | restores 2 (40 records)")
	require.Contains(t, out.String(), "w1 serves http://"+old+"/metrics")
}

// sumMetrics adds up a metric's series and ignores others and comments.
func TestSumMetrics(t *testing.T) {
	got, err := sumMetrics(strings.NewReader(`# TYPE a counter
a{x="1"} 2
a{x="}"} 3.5
ab 100
b 4
b_bucket{le="1"} 9
`), []string{"a", "b", "c"})
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"a": 5.5, "b": 4}, got)

	_, err = sumMetrics(strings.NewReader("a{x=\"1\"} nope\n"), []string{"a"})
	require.ErrorContains(t, err, "nope")
}
