package txn

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/txn/batch"
)

// metrics are the worker's Prometheus metrics, all prefixed sluice_.
type metrics struct {
	records      prometheus.Counter
	produced     prometheus.Counter
	deadLetters  prometheus.Counter
	skipped      prometheus.Counter
	duplicates   prometheus.Counter
	unchecked    prometheus.Counter
	late         prometheus.Counter
	txnCommitted prometheus.Counter
	txnAborted   *prometheus.CounterVec // by reason
	sessions     prometheus.Counter
	tasks        prometheus.Gauge
	restored     prometheus.Counter
}

// count adds a batch's counts.
func (w *Worker) count(c batch.Counts) {
	w.m.records.Add(float64(c.Tasks.Processed))
	w.m.deadLetters.Add(float64(c.Tasks.DeadLetter))
	w.m.skipped.Add(float64(c.Tasks.Skipped))
	w.m.duplicates.Add(float64(c.Tasks.Duplicates))
	w.m.unchecked.Add(float64(c.Tasks.Unchecked))
	w.m.late.Add(float64(c.Tasks.Late))
	w.m.produced.Add(float64(c.Produced))
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
		duplicates:   counter("duplicates_dropped_total", "Records a dedup operator dropped as seen within its span (including records of aborted transactions)."),
		unchecked:    counter("dedup_unchecked_total", "Records a dedup operator passed on unchecked: older than stream time minus its span."),
		late:         counter("late_records_dropped_total", "Records dropped because every window they belong to had closed (window end plus grace before stream time)."),
		txnCommitted: counter("transactions_committed_total", "Transactions (or offset commits) that committed."),
		txnAborted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sluice", Name: "transactions_aborted_total",
			Help: "Transactions that did not commit, by reason: rebalance, produce_error, unknown_outcome, processing_error, new_task (a partition assigned while the transaction was open, whose task is restored after the abort).", ConstLabels: labels}, []string{"reason"}),
		restored: counter("records_restored_total", "Changelog records replayed into local state."),
		sessions: counter("sessions_created_total", "Transactional sessions created (the first, and one per recovery from fencing or an unknown outcome)."),
		tasks:    prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sluice", Name: "tasks", Help: "Tasks currently open.", ConstLabels: labels}),
	}
	if reg != nil {
		// A worker restarted in the same process with the same registry
		// (same app and instance) continues the metrics of the last one.
		m.records = register(reg, m.records)
		m.produced = register(reg, m.produced)
		m.deadLetters = register(reg, m.deadLetters)
		m.skipped = register(reg, m.skipped)
		m.duplicates = register(reg, m.duplicates)
		m.unchecked = register(reg, m.unchecked)
		m.late = register(reg, m.late)
		m.txnCommitted = register(reg, m.txnCommitted)
		m.txnAborted = register(reg, m.txnAborted)
		m.sessions = register(reg, m.sessions)
		m.tasks = register(reg, m.tasks)
		m.restored = register(reg, m.restored)
	}
	return m
}

// register registers c, or returns the collector already registered in
// its place. Other registration errors (a name clash of another kind) are
// a programming error and panic, as MustRegister does.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c
	case errors.As(err, &are):
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}
