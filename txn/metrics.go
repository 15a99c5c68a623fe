package txn

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/txn/batch"
)

// metrics are the worker's Prometheus metrics, all prefixed sluice_.
type metrics struct {
	records        prometheus.Counter
	produced       prometheus.Counter
	deadLetters    prometheus.Counter
	skipped        prometheus.Counter
	duplicates     prometheus.Counter
	unchecked      prometheus.Counter
	late           prometheus.Counter
	txnCommitted   prometheus.Counter
	txnAborted     *prometheus.CounterVec // by reason
	sessions       prometheus.Counter
	tasks          prometheus.Gauge
	restored       prometheus.Counter
	mispartitioned prometheus.Counter
	batchSeconds   prometheus.Histogram
	batchRecords   prometheus.Histogram
	restoreSeconds prometheus.Histogram
	tasksAssigned  prometheus.Counter
	tasksRevoked   prometheus.Counter
	rebalances     prometheus.Counter
	assigned       prometheus.Gauge     // tasks of the partitions assigned now
	latency        prometheus.Histogram // end to end, sampled per partition and poll
	lag            *prometheus.GaugeVec // by topic and partition
	restoring      prometheus.Gauge     // tasks restoring now
	restoreOffsets *prometheus.GaugeVec // by task, while it restores
	restoreRead    *prometheus.GaugeVec // by task, while it restores
	storeKeys      *prometheus.GaugeVec // by store and task
	storeBytes     *prometheus.GaugeVec // by store and task
	user           *userMetrics         // the processors' own
}

// The reasons of sluice_transactions_aborted_total.
const (
	abortRebalance       = "rebalance"
	abortProduceError    = "produce_error"
	abortUnknownOutcome  = "unknown_outcome"
	abortProcessingError = "processing_error"
	abortNewTask         = "new_task"
)

// abortReasons lists the reasons in the order the help text gives them.
var abortReasons = []string{abortRebalance, abortProduceError, abortUnknownOutcome, abortProcessingError, abortNewTask}

// count adds a batch's counts once it ended. What befell bad and late
// input counts only for a batch that committed, so that under
// exactly_once those counters equal the records sent, however often a
// batch was retried; the others count aborted batches too (their help
// says so).
func (w *Worker) count(c batch.Counts, committed bool) {
	w.m.records.Add(float64(c.Tasks.Processed))
	w.m.duplicates.Add(float64(c.Tasks.Duplicates))
	w.m.unchecked.Add(float64(c.Tasks.Unchecked))
	w.m.produced.Add(float64(c.Produced))
	if committed {
		w.m.deadLetters.Add(float64(c.Tasks.DeadLetter))
		w.m.skipped.Add(float64(c.Tasks.Skipped))
		w.m.late.Add(float64(c.Tasks.Late))
	}
}

func newMetrics(reg prometheus.Registerer, appID, instance string) *metrics {
	labels := prometheus.Labels{"app": appID, "instance": instance}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sluice", Name: name, Help: help, ConstLabels: labels})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sluice", Name: name, Help: help, ConstLabels: labels})
	}
	m := &metrics{
		records:      counter("records_processed_total", "Input records run through the topology (including records of aborted transactions)."),
		produced:     counter("records_produced_total", "Output, DLQ and internal records produced (including aborted ones)."),
		deadLetters:  counter("dead_letters_total", "Input records routed to the DLQ, by batches that committed."),
		skipped:      counter("records_skipped_total", "Input records dropped by the skip error policy, in batches that committed."),
		duplicates:   counter("duplicates_dropped_total", "Records a dedup operator dropped as seen within its span (including records of aborted transactions)."),
		unchecked:    counter("dedup_unchecked_total", "Records a dedup operator passed on unchecked: older than stream time minus its span."),
		late:         counter("late_records_dropped_total", "Records dropped, in batches that committed, because every window they belong to had closed (window end plus grace before stream time)."),
		txnCommitted: counter("transactions_committed_total", "Transactions (or offset commits) that committed."),
		txnAborted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sluice", Name: "transactions_aborted_total",
			Help: "Transactions that did not commit, by reason: " + strings.Join(abortReasons, ", ") + " (new_task: a partition assigned while the transaction was open, whose task is restored after the abort).", ConstLabels: labels}, []string{"reason"}),
		restored:       counter("records_restored_total", "Changelog records replayed into local state."),
		mispartitioned: counter("records_mispartitioned_total", "Records of a co-partitioned source topic (joined partition by partition) that are not on the partition Kafka's default partitioner gives their key, seen while processing or restoring."),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "sluice", Name: "batch_duration_seconds", ConstLabels: labels,
			Help:    "Time from the start of a batch that committed (a transaction under exactly_once) to its commit, a restore inside it aside.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "sluice", Name: "batch_records", ConstLabels: labels,
			Help:    "Input records of a batch that committed.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		restoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "sluice", Name: "restore_duration_seconds", ConstLabels: labels,
			Help:    "Time a task's restore took, for restores that read changelog or input records.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}),
		tasksAssigned: counter("tasks_assigned_total", "Tasks the group assigned to this worker, over all rebalances."),
		tasksRevoked:  counter("tasks_revoked_total", "Tasks revoked from this worker or lost by it, over all rebalances."),
		sessions:      counter("sessions_created_total", "Transactional sessions created (the first, and one per recovery from fencing or an unknown outcome)."),
		tasks:         gauge("tasks", "Tasks currently open: a task opens (and restores) at its partition's first records after the assignment, and closes when its partition is revoked or lost."),
		rebalances:    counter("rebalances_total", "Group rebalances this worker completed (each join of the group; a cooperative rebalance that moves tasks away from the worker takes two)."),
		assigned:      gauge("assigned_tasks", "Tasks of the partitions the group assigns this worker now, updated as the group assigns or revokes them."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "sluice", Name: "end_to_end_latency_seconds", ConstLabels: labels,
			Help: "Time from an input record's timestamp to the commit of the batch that processed it, sampled at no cost per record: " +
				"one observation per partition of each poll of a committed batch, for its first record (the poll's oldest of that partition).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "sluice", Name: "consumer_lag", ConstLabels: labels,
			Help: "Records of an assigned input partition after the committed position, as of the batch that last committed the partition's records: its last stable offset (read_committed end) when fetched, minus the offset after the last record committed."},
			[]string{"topic", "partition"}),
		restoring: gauge("restoring_tasks", "Tasks restoring their state now."),
		restoreOffsets: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "sluice", Name: "restore_offsets", ConstLabels: labels,
			Help: "Offsets a task restoring now reads in all (changelog records, input records seen for the stream time, transaction markers); the series goes when the restore ends."},
			[]string{"task"}),
		restoreRead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "sluice", Name: "restore_offsets_read", ConstLabels: labels,
			Help: "Offsets a task restoring now has read of sluice_restore_offsets; the series goes when the restore ends."},
			[]string{"task"}),
		storeKeys: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "sluice", Name: "store_keys", ConstLabels: labels,
			Help: "Entries in a store of an open task (all its keys, as of the last committed batch), counted at most every few seconds, after a commit."},
			[]string{"store", "task"}),
		storeBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "sluice", Name: "store_disk_bytes", ConstLabels: labels,
			Help: "Bytes on disk of a store of an open task, estimated by Pebble from the files holding its key range (writes not flushed yet aside), measured with sluice_store_keys."},
			[]string{"store", "task"}),
		user: &userMetrics{reg: reg, labels: labels, made: map[string]userMetric{}},
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
		m.mispartitioned = register(reg, m.mispartitioned)
		m.batchSeconds = register(reg, m.batchSeconds)
		m.batchRecords = register(reg, m.batchRecords)
		m.restoreSeconds = register(reg, m.restoreSeconds)
		m.tasksAssigned = register(reg, m.tasksAssigned)
		m.tasksRevoked = register(reg, m.tasksRevoked)
		m.rebalances = register(reg, m.rebalances)
		m.assigned = register(reg, m.assigned)
		m.latency = register(reg, m.latency)
		m.lag = register(reg, m.lag)
		m.restoring = register(reg, m.restoring)
		m.restoreOffsets = register(reg, m.restoreOffsets)
		m.restoreRead = register(reg, m.restoreRead)
		m.storeKeys = register(reg, m.storeKeys)
		m.storeBytes = register(reg, m.storeBytes)
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
