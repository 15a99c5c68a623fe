package txn

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Health is a worker's state as a liveness or readiness probe sees it
// (Worker.Health).
type Health struct {
	// Live: Run is running and its loop is not stuck: no batch has been
	// open for longer than the transaction timeout (a restore's time
	// aside). A worker waiting for records, for its brokers or for a
	// rebalance, or restoring, is live.
	Live bool
	// Ready: the worker is a member of its group, with a session that has
	// joined it, and every task of the partitions assigned to it is
	// restored and open (a task is created and restored when its
	// partition is assigned, records or not). A worker with no
	// partitions (more workers than partitions) is ready.
	Ready bool
	// Why says what keeps the worker from being live or ready; "" when it
	// is both.
	Why string
	// Tasks is the number of open tasks; Restoring, of tasks restoring
	// their state now.
	Tasks, Restoring int
}

// health is what Worker.Health reads, written by the loop and the
// restores.
type health struct {
	running   atomic.Bool
	client    atomic.Pointer[kgo.Client] // the current session's; nil between sessions
	restoring atomic.Int32
	tasks     atomic.Int32
	batchFrom atomic.Int64 // when the open batch began (Unix ns); 0: none
}

// Health returns the worker's state for probes. It is safe to call at any
// time, from any goroutine, before, during and after Run.
func (w *Worker) Health() Health {
	h := Health{Tasks: int(w.health.tasks.Load()), Restoring: int(w.health.restoring.Load())}
	if !w.health.running.Load() {
		h.Why = "not running"
		return h
	}
	if from := w.health.batchFrom.Load(); from != 0 && h.Restoring == 0 {
		if open := time.Since(time.Unix(0, from)); open > w.cfg.TransactionTimeout {
			h.Why = fmt.Sprintf("a batch has been open for %v, longer than the transaction timeout (%v)", open.Round(time.Millisecond), w.cfg.TransactionTimeout)
			return h
		}
	}
	h.Live = true
	cl := w.health.client.Load()
	switch {
	case cl == nil:
		h.Why = "no session: starting, or re-creating it"
	case !joined(cl):
		h.Why = "joining the group"
	case h.Restoring > 0:
		h.Why = fmt.Sprintf("%d tasks restoring", h.Restoring)
	case w.unprepared():
		h.Why = "tasks assigned and not restored yet"
	default:
		h.Ready = true
	}
	return h
}

// unprepared reports whether partitions are assigned to the session
// whose tasks the loop has not prepared yet.
func (w *Worker) unprepared() bool {
	s := w.starts.Load()
	return s != nil && s.pending()
}

// joined reports whether cl's group session has joined its group.
func joined(cl *kgo.Client) bool {
	_, generation := cl.GroupMetadata()
	return generation >= 0
}

// setTasks records how many tasks are open, for the metric and Health.
func (w *Worker) setTasks(n int) {
	w.m.tasks.Set(float64(n))
	w.health.tasks.Store(int32(n))
}

// batchBegins and batchEnds bracket a batch, for Health's liveness and
// the batch metrics: a batch that committed is observed, with its input
// records, its latency and the lag it leaves. The loop's goroutine calls
// batchEnds.
func (w *Worker) batchBegins() { w.health.batchFrom.Store(time.Now().UnixNano()) }
func (w *Worker) batchEnds(committed bool, records int) {
	if from := w.health.batchFrom.Swap(0); committed && from != 0 {
		w.m.batchSeconds.Observe(time.Since(time.Unix(0, from)).Seconds())
		w.m.batchRecords.Observe(float64(records))
	}
	w.observeEnd(committed)
}
