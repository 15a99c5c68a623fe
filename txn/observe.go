package txn

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/batch"
	"github.com/sluicehq/sluice/txn/topology"
)

// observed is what the loop keeps of its batches for the end-to-end
// latency and the consumer lag. It is the loop goroutine's.
//
// Nothing is done per record: a poll's partitions are walked once, and
// what the metrics need of each (its first record's timestamp, the offset
// after its last record, the end of the partition when it was fetched) is
// kept until the batch ends. Only a batch that committed is observed.
type observed struct {
	polled []polled
	lag    map[topicPartition]prometheus.Gauge // the series set, by partition
}

// polled is one partition of one poll of the open batch.
type polled struct {
	tp    topicPartition
	first time.Time // the first record's timestamp
	next  int64     // the offset after the last record
	end   int64     // the partition's last stable offset when fetched
}

type topicPartition struct {
	topic     string
	partition int32
}

// observe keeps what the batch's metrics need of a poll's partitions.
func (w *Worker) observe(f kgo.Fetches) {
	for i := range f {
		for j := range f[i].Topics {
			ft := &f[i].Topics[j]
			for k := range ft.Partitions {
				fp := &ft.Partitions[k]
				if len(fp.Records) == 0 {
					continue
				}
				// Read with read_committed, a partition ends at its last
				// stable offset; a fetch that did not report one has the
				// high watermark.
				end := fp.LastStableOffset
				if end < 0 {
					end = fp.HighWatermark
				}
				w.obs.polled = append(w.obs.polled, polled{
					tp:    topicPartition{ft.Topic, fp.Partition},
					first: fp.Records[0].Timestamp,
					next:  fp.Records[len(fp.Records)-1].Offset + 1,
					end:   end,
				})
			}
		}
	}
}

// observeEnd observes the batch that ended, if it committed, and forgets
// its polls.
func (w *Worker) observeEnd(committed bool) {
	if committed {
		now := time.Now()
		for _, p := range w.obs.polled {
			if p.first.UnixMilli() > 0 { // a record without a timestamp has -1
				w.m.latency.Observe(max(now.Sub(p.first), 0).Seconds())
			}
			w.lagOf(p.tp).Set(float64(max(p.end-p.next, 0)))
		}
	}
	clear(w.obs.polled)
	w.obs.polled = w.obs.polled[:0]
}

// lagOf returns the lag series of a partition, made at its first commit.
func (w *Worker) lagOf(tp topicPartition) prometheus.Gauge {
	g, ok := w.obs.lag[tp]
	if !ok {
		if w.obs.lag == nil {
			w.obs.lag = map[topicPartition]prometheus.Gauge{}
		}
		g = w.m.lag.WithLabelValues(tp.topic, strconv.Itoa(int(tp.partition)))
		w.obs.lag[tp] = g
	}
	return g
}

// forgetLag drops the lag series of partitions this worker no longer
// owns (all of them: nil), so that none reports a stale lag. The loop
// calls it with the partitions it takes as revoked.
func (w *Worker) forgetLag(revoked map[string][]int32, all bool) {
	for _, tp := range slices.Collect(maps.Keys(w.obs.lag)) {
		if all || slices.Contains(revoked[tp.topic], tp.partition) {
			w.m.lag.DeleteLabelValues(tp.topic, strconv.Itoa(int(tp.partition)))
			delete(w.obs.lag, tp)
		}
	}
}

// assignment is the partitions the group assigns the current session's
// client, for sluice_assigned_tasks; guarded by Worker.mu.
type assignment struct {
	client *kgo.Client
	parts  map[string][]int32
}

// assign records partitions assigned to (revoked is false) or revoked
// from (true) cl and sets sluice_assigned_tasks. Callbacks of a client
// that is no longer the session's (a previous session's, closing in the
// background) change nothing.
func (w *Worker) assign(cl *kgo.Client, parts map[string][]int32, revoked bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := &w.assignment
	switch {
	case !revoked && a.client != cl:
		a.client, a.parts = cl, map[string][]int32{}
	case a.client != cl:
		return
	}
	for topic, ps := range parts {
		if revoked {
			a.parts[topic] = slices.DeleteFunc(a.parts[topic], func(p int32) bool { return slices.Contains(ps, p) })
		} else {
			for _, p := range ps {
				if !slices.Contains(a.parts[topic], p) {
					a.parts[topic] = append(a.parts[topic], p)
				}
			}
		}
	}
	w.m.assigned.Set(float64(len(w.tasksOf(a.parts))))
}

// unassign forgets the assignment of a session that ends.
func (w *Worker) unassign() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.assignment = assignment{}
	w.m.assigned.Set(0)
}

// storeSizes is what the loop keeps to measure its tasks' stores now and
// then, after commits: counting a store's keys walks them.
type storeSizes struct {
	every  time.Duration                // at most this often (storeSizesEvery)
	next   time.Time                    // not before
	dirty  bool                         // a commit, or a task closed, since the last measure
	series map[topology.TaskID][]string // the stores with series, by task
}

// storeSizesEvery is how often at most the loop measures the stores. A
// measure that takes long (large stores) waits 100 times as long before
// the next, so that it never costs more than 1% of the loop's time.
const storeSizesEvery = 5 * time.Second

// measureStores sets the store metrics of the open tasks, if a commit
// or a closed task changed them since the last time and that was long
// enough ago, and drops the series of tasks closed since. The loop calls
// it between batches.
func (w *Worker) measureStores(c *batch.Core) {
	s := &w.sizes
	if !s.dirty || time.Now().Before(s.next) {
		return
	}
	start := time.Now()
	if s.series == nil {
		s.series = map[topology.TaskID][]string{}
	}
	open := map[topology.TaskID]bool{}
	for id, t := range c.Tasks() {
		open[id] = true
		sizer, ok := t.(topology.StoreSizer)
		if !ok {
			continue
		}
		task := taskName(id)
		sizes, err := sizer.StoreSizes()
		if err != nil {
			w.log.Warn("measuring the stores of a task failed", "task", task, "err", err)
			continue
		}
		stores := s.series[id][:0]
		for _, z := range sizes {
			w.m.storeKeys.WithLabelValues(z.Store, task).Set(float64(z.Keys))
			w.m.storeBytes.WithLabelValues(z.Store, task).Set(float64(z.DiskBytes))
			stores = append(stores, z.Store)
		}
		s.series[id] = stores
	}
	for id := range s.series {
		if !open[id] {
			w.forgetStoresOf(id)
		}
	}
	s.dirty = false
	s.next = time.Now().Add(max(s.every, 100*time.Since(start)))
}

// forgetStores drops the store series of every task (a session ends).
func (w *Worker) forgetStores() {
	for id := range w.sizes.series {
		w.forgetStoresOf(id)
	}
}

func (w *Worker) forgetStoresOf(id topology.TaskID) {
	task := taskName(id)
	for _, store := range w.sizes.series[id] {
		w.m.storeKeys.DeleteLabelValues(store, task)
		w.m.storeBytes.DeleteLabelValues(store, task)
	}
	delete(w.sizes.series, id)
}

// taskName is a task's name in logs and metrics: sub-topology_partition.
func taskName(id topology.TaskID) string {
	return strconv.Itoa(id.Subtopology) + "_" + strconv.Itoa(int(id.Partition))
}
