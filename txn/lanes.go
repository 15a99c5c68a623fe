package txn

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// lanes run the records of a batch through their tasks on several
// goroutines, each with its own producing goroutine (pipe). A task always
// runs on the same lane, the one its partition number picks, so it is
// used by one goroutine at a time and its outputs reach franz-go in the
// order it emitted them; the outputs of different tasks interleave, as
// they may. The loop goroutine is the first lane.
//
// The stateful count spends most of its time in the loop goroutine
// (processing) and the producing one; with a lane per CPU both spread
// over every CPU.
type lanes struct {
	ts    *tasks
	lanes []lane
}

// lane is what one goroutine of lanes owns.
type lane struct {
	outs     *pipe
	out      []*kgo.Record // Process's output buffer, reused
	inputs   []input       // of the poll being processed
	produced int
	produce  func(*kgo.Record)
	err      error
}

// newLanes returns n lanes (at least one) for one batch: each hands its
// tasks' outputs to produce from a goroutine of its own. close must be
// called before the batch's flush.
func newLanes(ts *tasks, n int, produce func(*kgo.Record)) *lanes {
	ls := &lanes{ts: ts, lanes: make([]lane, max(n, 1))}
	for i := range ls.lanes {
		l := &ls.lanes[i]
		l.outs = newPipe(produce)
		l.produce = func(r *kgo.Record) {
			l.produced++
			l.outs.add(r)
		}
	}
	return ls
}

// process runs the records of one poll, whose tasks are open (see
// Worker.prepareTasks). The tasks are looked up first, on the calling
// goroutine; then every lane processes its partitions. It returns the
// first lane's error in lane order.
func (ls *lanes) process(f kgo.Fetches) error {
	var err error
	busy := 0
	f.EachPartition(func(p kgo.FetchTopicPartition) {
		if err != nil || len(p.Records) == 0 {
			return
		}
		var in input
		if in, err = ls.ts.input(p); err != nil {
			return
		}
		l := &ls.lanes[int(p.Partition)%len(ls.lanes)]
		if len(l.inputs) == 0 {
			busy++
		}
		l.inputs = append(l.inputs, in)
	})
	if err != nil {
		ls.reset()
		return err
	}
	var wg sync.WaitGroup
	for i := 1; i < len(ls.lanes); i++ {
		if l := &ls.lanes[i]; len(l.inputs) > 0 {
			if busy == 1 {
				l.run(ls.ts) // the only busy lane: no goroutine needed
			} else {
				wg.Go(func() { l.run(ls.ts) })
			}
		}
	}
	ls.lanes[0].run(ls.ts)
	wg.Wait()
	for i := range ls.lanes {
		if err == nil {
			err = ls.lanes[i].err
		}
	}
	ls.reset()
	return err
}

// run processes the lane's partitions of the poll.
func (l *lane) run(ts *tasks) {
	for _, in := range l.inputs {
		if l.out, l.err = ts.process(in, l.out, l.produce); l.err != nil {
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

// close waits until every lane handed all its outputs to franz-go, and
// returns how many there were. The lanes cannot be used afterwards.
func (ls *lanes) close() int {
	n := 0
	for i := range ls.lanes {
		l := &ls.lanes[i]
		clear(l.out)
		l.outs.close()
		n += l.produced
	}
	return n
}
