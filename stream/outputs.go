package stream

import (
	"sync"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/twmb/franz-go/pkg/kgo"
)

// outputs is the memory of a task's output records and of their encoded
// keys and values, carved from slabs and chunks. Once the runtime has
// produced them all (Recycle), the slabs and chunks go to pools that every
// task of the process draws from, so that a steady stream of transactions
// allocates neither, and what is kept is bounded by what one transaction
// needs (the garbage collector empties the pools of what stays unused).
type outputs struct {
	slab  []kgo.Record            // the rest of the slab being carved
	slabs []*[slabSize]kgo.Record // carved since the last Recycle

	chunk  []byte // the chunk being filled, up to its capacity
	chunks []*[chunkSize]byte

	// scratch is where serdes that can append encode (serde.Appender).
	scratch []byte
}

const (
	// slabSize is how many output records are allocated at once.
	slabSize = 64
	// chunkSize is how many bytes of keys and values are allocated at
	// once; a key or value larger than a quarter of it is allocated alone.
	chunkSize = 16 << 10
)

var (
	slabPool  = sync.Pool{New: func() any { return new([slabSize]kgo.Record) }}
	chunkPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}
)

// newRecord returns a record for an output; the caller assigns it a whole
// kgo.Record.
func (t *task) newRecord() *kgo.Record {
	o := &t.outputs
	if len(o.slab) == 0 {
		s := slabPool.Get().(*[slabSize]kgo.Record)
		o.slabs = append(o.slabs, s)
		o.slab = s[:]
	}
	r := &o.slab[0]
	o.slab = o.slab[1:]
	return r
}

// copyBytes returns a copy of b (nil stays nil) that lives until the
// records of the transaction are produced: for the keys and values of
// outputs.
func (t *task) copyBytes(b []byte) []byte {
	switch {
	case b == nil:
		return nil
	case len(b) == 0:
		return []byte{}
	}
	o := &t.outputs
	if len(b) > cap(o.chunk)-len(o.chunk) {
		if len(b) > chunkSize/4 {
			return append(make([]byte, 0, len(b)), b...) // too large to carve
		}
		c := chunkPool.Get().(*[chunkSize]byte)
		o.chunks = append(o.chunks, c)
		o.chunk = c[:0]
	}
	n := len(o.chunk)
	o.chunk = append(o.chunk, b...)
	return o.chunk[n:len(o.chunk):len(o.chunk)]
}

// encoder encodes the keys or values of outputs with a serde: through
// serde.Appender into the task's reused memory when the serde is one,
// otherwise with Encode.
type encoder[T any] struct {
	ser serde.Serde[T]
	app serde.Appender[T] // ser, if it is one
}

func newEncoder[T any](ser serde.Serde[T]) encoder[T] {
	app, _ := ser.(serde.Appender[T])
	return encoder[T]{ser: ser, app: app}
}

func (e encoder[T]) encode(t *task, v T) ([]byte, error) {
	if e.app == nil {
		return e.ser.Encode(v)
	}
	if t.outputs.scratch == nil {
		// Never nil: an empty encoding stays an empty key or value,
		// which Kafka tells apart from a null one.
		t.outputs.scratch = make([]byte, 0, 64)
	}
	b, err := e.app.AppendEncode(t.outputs.scratch[:0], v)
	if err != nil {
		return nil, err
	}
	t.outputs.scratch = b
	return t.copyBytes(b), nil
}

// Recycle implements topology.Recycler: the records Process returned are all
// produced, so their slabs and chunks go back to the pools, once the
// offsets of the last changelog records are taken (see
// changelogWriter). The records are not cleared: whoever carves one
// assigns it whole.
func (t *task) Recycle() {
	t.noteOffsets()
	o := &t.outputs
	for i, s := range o.slabs {
		slabPool.Put(s)
		o.slabs[i] = nil
	}
	for i, c := range o.chunks {
		chunkPool.Put(c)
		o.chunks[i] = nil
	}
	o.slabs, o.chunks = o.slabs[:0], o.chunks[:0]
	o.slab, o.chunk = nil, nil
}
