package txn

// outcome is how a batch ended, as the loop found out from the broker.
type outcome int

const (
	// batchCommitted: the transaction (or the offset commit) committed,
	// every output acknowledged.
	batchCommitted outcome = iota
	// batchAborted: the transaction was aborted with every output flushed, by
	// a rebalance, or by the loop (a processing error, a partition whose
	// task was not open).
	batchAborted
	// batchProduceFailed: an output could not be produced; the
	// transaction was aborted, and the producer may hold outputs still.
	batchProduceFailed
	// batchUnknown: ending the transaction failed; it may have committed.
	batchUnknown
)

func (o outcome) String() string {
	switch o {
	case batchCommitted:
		return "committed"
	case batchAborted:
		return "aborted"
	case batchProduceFailed:
		return "produce failed"
	case batchUnknown:
		return "unknown"
	}
	return "invalid"
}

// tasksStep is what becomes of the tasks after a batch.
type tasksStep int

const (
	// commitTasks: every stateful task applies its pending state; every
	// task may reuse its outputs' memory.
	commitTasks tasksStep = iota
	// discardTasks: every task forgets its pending state and stays open,
	// as franz-go rewinds every partition to its committed offset.
	discardTasks
	// dropTasks: every task closes; each is restored from its changelog
	// when its partition's records come again.
	dropTasks
)

// step is what the loop does after a batch.
type step struct {
	tasks tasksStep
	// closeRevoked: the tasks of partitions revoked or lost meanwhile
	// close (with dropTasks every task closes).
	closeRevoked bool
	// recreate: the session goes: a new producer epoch and consumer, the
	// offsets fetched again from the group.
	recreate bool
}

// stepAfter maps a batch's outcome to what follows it (DESIGN.md
// invariants 4 and 5): the one place that decides it, for every loop.
func stepAfter(o outcome) step {
	switch o {
	case batchCommitted:
		return step{tasks: commitTasks, closeRevoked: true}
	case batchAborted:
		return step{tasks: discardTasks, closeRevoked: true}
	case batchProduceFailed:
		// The producer may still hold outputs, which must not be reused,
		// and the session must go anyway.
		return step{tasks: dropTasks, recreate: true}
	default: // batchUnknown: the tasks' state may be behind a commit
		return step{tasks: dropTasks, recreate: true}
	}
}

// after takes the step that follows outcome o for the tasks: they commit,
// discard or drop, and those of revoked partitions close. The loop
// re-creates the session where the step says so: end returns an error
// for those outcomes.
func (w *Worker) after(ts *tasks, o outcome) {
	s := stepAfter(o)
	switch s.tasks {
	case commitTasks:
		ts.commit() // after the Kafka commit: apply state (invariant 4)
	case discardTasks:
		ts.discard()
	case dropTasks:
		ts.drop()
	}
	if s.closeRevoked {
		w.closeRevoked(ts)
	} else {
		w.takeRevoked() // every task closed
	}
}
