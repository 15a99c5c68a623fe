package txn

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/txn/topology"
)

// userMetrics makes the processors' own metrics (topology.Metrics):
// registered on the worker's Registerer with its constant labels, one of
// each name for all the worker's tasks.
type userMetrics struct {
	reg    prometheus.Registerer // nil: made, not registered
	labels prometheus.Labels

	mu   sync.Mutex
	made map[string]userMetric // by name
}

// userMetric is a metric made, with what it was asked for.
type userMetric struct {
	m    prometheus.Collector
	spec string // kind, help and buckets
}

var _ topology.Metrics = (*userMetrics)(nil)

// Counter implements topology.Metrics.
func (u *userMetrics) Counter(name, help string) (topology.Counter, error) {
	return makeUserMetric(u, name, "counter "+help, func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: u.labels})
	})
}

// Gauge implements topology.Metrics.
func (u *userMetrics) Gauge(name, help string) (topology.Gauge, error) {
	return makeUserMetric(u, name, "gauge "+help, func() prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: u.labels})
	})
}

// Histogram implements topology.Metrics.
func (u *userMetrics) Histogram(name, help string, buckets []float64) (topology.Histogram, error) {
	return makeUserMetric(u, name, fmt.Sprintf("histogram %v %s", buckets, help), func() prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: u.labels, Buckets: buckets})
	})
}

// makeUserMetric returns the metric name: made by newMetric and
// registered at the first call, the same one at the next calls that ask
// for it with the same spec. The registry checks the name and help (one
// of its own when the worker has none), and that the name is not taken
// by another collector, such as the worker's own metrics.
func makeUserMetric[M prometheus.Collector](u *userMetrics, name, spec string, newMetric func() M) (M, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var zero M
	if had, ok := u.made[name]; ok {
		if had.spec != spec {
			return zero, fmt.Errorf("txn: metric %s was made before as another kind, or with another help text or buckets", name)
		}
		return had.m.(M), nil
	}
	m := newMetric()
	reg := u.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if err := reg.Register(m); err != nil {
		return zero, fmt.Errorf("txn: metric %s: %w", name, err)
	}
	u.made[name] = userMetric{m: m, spec: spec}
	return m, nil
}
