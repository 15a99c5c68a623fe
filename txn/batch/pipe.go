package batch

import "github.com/twmb/franz-go/pkg/kgo"

// pipe hands a batch's outputs to franz-go from a goroutine of its own,
// so that producing (partitioning, buffering, a lock per record) runs on
// one CPU while the loop processes the next records on another. Records
// reach franz-go in the order they were added; close returns once every
// one has, so a flush after it covers them all.
type pipe struct {
	produce func(*kgo.Record)
	chunks  chan []*kgo.Record // to the producing goroutine
	free    chan []*kgo.Record // back from it, for reuse
	done    chan struct{}      // closed when the goroutine has produced everything
	chunk   []*kgo.Record      // being filled
}

// pipeChunk is how many records travel to the producing goroutine at
// once: a channel operation per chunk, not per record.
const pipeChunk = 256

// pipeDepth is how many chunks may wait for the producing goroutine. It
// bounds how far the loop runs ahead: beyond it, add blocks.
const pipeDepth = 16

// newPipe starts a goroutine that calls produce for every record added.
func newPipe(produce func(*kgo.Record)) *pipe {
	p := &pipe{
		produce: produce,
		chunks:  make(chan []*kgo.Record, pipeDepth),
		free:    make(chan []*kgo.Record, pipeDepth+1),
		done:    make(chan struct{}),
	}
	p.chunk = make([]*kgo.Record, 0, pipeChunk)
	go p.run()
	return p
}

func (p *pipe) run() {
	defer close(p.done)
	for c := range p.chunks {
		for _, r := range c {
			p.produce(r)
		}
		clear(c)
		select {
		case p.free <- c[:0]:
		default:
		}
	}
}

// add queues r for producing. It is not safe for concurrent use.
func (p *pipe) add(r *kgo.Record) {
	p.chunk = append(p.chunk, r)
	if len(p.chunk) < pipeChunk {
		return
	}
	p.chunks <- p.chunk
	select {
	case p.chunk = <-p.free:
	default:
		p.chunk = make([]*kgo.Record, 0, pipeChunk)
	}
}

// close produces what is queued and returns when every added record has
// been handed to franz-go. The pipe cannot be used afterwards.
func (p *pipe) close() {
	if len(p.chunk) > 0 {
		p.chunks <- p.chunk
	}
	p.chunk = nil
	close(p.chunks)
	<-p.done
}
