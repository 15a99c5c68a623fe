package batch

// Outcome is how a batch ended, as the loop found out from the broker.
type Outcome int

const (
	// Committed: the transaction (or the offset commit) committed, every
	// output acknowledged.
	Committed Outcome = iota
	// Aborted: the transaction was aborted with every output flushed, by
	// a rebalance, or by the loop (a processing error, a partition whose
	// task was not open).
	Aborted
	// ProduceFailed: an output could not be produced; the transaction was
	// aborted, and the producer may hold outputs still.
	ProduceFailed
	// Unknown: ending the transaction failed; it may have committed.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	case ProduceFailed:
		return "produce failed"
	case Unknown:
		return "unknown"
	}
	return "invalid"
}

// TasksStep is what becomes of the tasks after a batch.
type TasksStep int

const (
	// CommitTasks: every stateful task applies its pending state; every
	// task may reuse its outputs' memory.
	CommitTasks TasksStep = iota
	// DiscardTasks: every task forgets its pending state and stays open,
	// as franz-go rewinds every partition to its committed offset.
	DiscardTasks
	// DropTasks: every task closes; each is restored from its changelog
	// when its partition's records come again.
	DropTasks
)

// Step is what follows a batch.
type Step struct {
	Tasks TasksStep
	// CloseRevoked: the tasks of partitions revoked or lost meanwhile
	// close (with DropTasks every task closes).
	CloseRevoked bool
	// Recreate: the loop re-creates its session: a new producer epoch and
	// consumer, the offsets fetched again from the group.
	Recreate bool
}

// StepAfter maps a batch's outcome to what follows it (DESIGN.md
// invariants 4 and 5): the one place that decides it, for every loop.
func StepAfter(o Outcome) Step {
	switch o {
	case Committed:
		return Step{Tasks: CommitTasks, CloseRevoked: true}
	case Aborted:
		return Step{Tasks: DiscardTasks, CloseRevoked: true}
	case ProduceFailed:
		// The producer may still hold outputs, which must not be reused,
		// and the session must go anyway.
		return Step{Tasks: DropTasks, Recreate: true}
	default: // Unknown: the tasks' state may be behind a commit
		return Step{Tasks: DropTasks, Recreate: true}
	}
}
