package txn

import "github.com/prometheus/client_golang/prometheus"

// metrics are the worker's Prometheus metrics, all prefixed sluice_.
type metrics struct {
	records      prometheus.Counter
	produced     prometheus.Counter
	deadLetters  prometheus.Counter
	skipped      prometheus.Counter
	txnCommitted prometheus.Counter
	txnAborted   *prometheus.CounterVec // by reason
	sessions     prometheus.Counter
	tasks        prometheus.Gauge
	restored     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, appID, instance string) *metrics {
	labels := prometheus.Labels{"app": appID, "instance": instance}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sluice", Name: name, Help: help, ConstLabels: labels})
	}
	m := &metrics{
		records:      counter("records_processed_total", "Input records run through the topology (including records of aborted transactions)."),
		produced:     counter("records_produced_total", "Output, DLQ and internal records produced (including aborted ones)."),
		deadLetters:  counter("dead_letters_total", "Input records routed to the DLQ."),
		skipped:      counter("records_skipped_total", "Input records dropped by the skip error policy."),
		txnCommitted: counter("transactions_committed_total", "Transactions (or offset commits) that committed."),
		txnAborted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sluice", Name: "transactions_aborted_total",
			Help: "Transactions that did not commit, by reason: rebalance, produce_error, unknown_outcome, shutdown.", ConstLabels: labels}, []string{"reason"}),
		restored: counter("records_restored_total", "Changelog records replayed into local state."),
		sessions: counter("sessions_created_total", "Transactional sessions created (the first, and one per recovery from fencing or an unknown outcome)."),
		tasks:    prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sluice", Name: "tasks", Help: "Tasks currently open.", ConstLabels: labels}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.produced, m.deadLetters, m.skipped, m.txnCommitted, m.txnAborted, m.sessions, m.tasks, m.restored)
	}
	return m
}
