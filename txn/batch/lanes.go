package batch

import (
	"errors"
	"fmt"
	"sync"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lanes run the records of a batch through their tasks on several
// goroutines. A task always runs on the same lane, the one its partition
// number picks, so it is used by one goroutine at a time and its outputs
// reach the producer in the order it emitted them; the outputs of
// different tasks interleave, as they may. The loop goroutine is the
// first lane. Each lane hands its outputs to the producer from a
// goroutine of its own (pipe), or inline, as it emits them.
//
// The stateful count spends most of its time in the loop goroutine
// (processing) and the producing one; with a lane per CPU both spread
// over every CPU.
type lanes struct {
	ts     *tasks
	inline bool
	open   bool // between begin and finish
	lanes  []lane
	wg     sync.WaitGroup // the lanes running a poll on goroutines of their own
}

// lane is what one goroutine of lanes owns.
type lane struct {
	outs     *pipe // of the open batch; nil when inline
	sink     func(*kgo.Record)
	emit     func(*kgo.Record) // counts, then hands to outs or sink
	out      []*kgo.Record     // Process's output buffer, reused
	inputs   []input           // of the poll being processed
	produced int
	stats    topology.TaskStats // the lane's tasks' counters in this batch
	err      error
}

// newLanes returns n lanes (at least one) over ts.
func newLanes(ts *tasks, n int, inline bool) *lanes {
	ls := &lanes{ts: ts, inline: inline, lanes: make([]lane, max(n, 1))}
	for i := range ls.lanes {
		l := &ls.lanes[i]
		l.emit = func(r *kgo.Record) {
			l.produced++
			if l.outs != nil {
				l.outs.add(r)
			} else {
				l.sink(r)
			}
		}
	}
	return ls
}

// begin starts a batch whose outputs go to produce (from a goroutine per
// lane unless inline). finish must be called before the batch's flush.
func (ls *lanes) begin(produce func(*kgo.Record)) {
	for i := range ls.lanes {
		l := &ls.lanes[i]
		l.sink, l.produced, l.stats = produce, 0, topology.TaskStats{}
		if !ls.inline {
			l.outs = newPipe(produce)
		}
	}
	ls.open = true
}

// process runs the records of one poll, whose tasks are open. The tasks
// are looked up first, on the calling goroutine, and a poll with a
// partition whose task is not open is refused before any record runs;
// then every lane processes its partitions. It returns the first lane's
// error in lane order.
func (ls *lanes) process(f kgo.Fetches) error {
	busy := 0
	for i := range f {
		for j := range f[i].Topics {
			ft := &f[i].Topics[j]
			for k := range ft.Partitions {
				fp := &ft.Partitions[k]
				if len(fp.Records) == 0 {
					continue
				}
				in, err := ls.ts.input(ft.Topic, fp.Partition, fp.Records)
				if err != nil {
					ls.reset()
					return err
				}
				l := &ls.lanes[int(fp.Partition)%len(ls.lanes)]
				if len(l.inputs) == 0 {
					busy++
				}
				l.inputs = append(l.inputs, in)
			}
		}
	}
	for i := 1; i < len(ls.lanes); i++ {
		if l := &ls.lanes[i]; len(l.inputs) > 0 {
			if busy == 1 {
				l.run() // the only busy lane: no goroutine needed
			} else {
				ls.wg.Go(l.run)
			}
		}
	}
	ls.lanes[0].run()
	ls.wg.Wait()
	var err error
	for i := range ls.lanes {
		if err == nil {
			err = ls.lanes[i].err
		}
	}
	ls.reset()
	return err
}

// run processes the lane's partitions of the poll.
func (l *lane) run() {
	for _, in := range l.inputs {
		if l.out, l.err = process(in, l.out, l.emit, &l.stats); l.err != nil {
			return
		}
	}
}

// reset forgets the poll's partitions and errors.
func (ls *lanes) reset() {
	for i := range ls.lanes {
		l := &ls.lanes[i]
		clear(l.inputs)
		l.inputs, l.err = l.inputs[:0], nil
	}
}

// flush has every task of list that holds records back (a Flusher) hand
// them to its lane's producer. The lanes are idle: it runs each task on
// the calling goroutine.
func (ls *lanes) flush(list []openTask) error {
	var errs []error
	for _, ot := range list {
		if ot.flusher == nil {
			continue
		}
		l := &ls.lanes[int(ot.id.Partition)%len(ls.lanes)]
		out, err := ot.flusher.Flush(l.out[:0])
		for _, r := range out {
			l.emit(r)
		}
		l.out = out
		if err != nil {
			errs = append(errs, fmt.Errorf("batch: task %s: flush: %w", name(ot.id), err))
		}
	}
	return errors.Join(errs...)
}

// finish waits until every lane handed all its outputs to produce, and
// returns how many there were and the tasks' counters in the batch.
func (ls *lanes) finish() (produced int, stats topology.TaskStats) {
	for i := range ls.lanes {
		l := &ls.lanes[i]
		clear(l.out)
		if l.outs != nil {
			l.outs.close()
			l.outs = nil
		}
		l.sink = nil
		produced += l.produced
		stats.Add(l.stats)
	}
	ls.open = false
	return produced, stats
}
