package stream

import (
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/twmb/franz-go/pkg/kgo"
)

// outputs is the memory of a task's output records and of their encoded
// keys and values: carved from slabs and chunks, and reused once the
// runtime produced them all (Recycle), so that a steady stream of
// transactions allocates neither.
type outputs struct {
	// slab is the rest of the slab being carved; slabs[:used] were carved
	// since the last Recycle, slabs[used:] are free.
	slab  []kgo.Record
	slabs [][]kgo.Record
	used  int

	// chunk is the chunk bytes are copied into, up to its capacity;
	// chunks[:usedChunks] were filled since the last Recycle.
	chunk      []byte
	chunks     [][]byte
	usedChunks int

	// scratch is where serdes that can append encode (serde.Appender).
	scratch []byte
}

const (
	// slabSize is how many output records are allocated at once.
	slabSize = 64
	// chunkSize is how many bytes of keys and values are allocated at
	// once; a larger key or value than a quarter of it is allocated alone.
	chunkSize = 16 << 10
	// keptSlabs and keptChunks bound the memory a task keeps for reuse
	// (about 1.3 MB and 1 MB): a transaction with more outputs allocates
	// the rest anew, and the garbage collector takes it.
	keptSlabs  = 128
	keptChunks = 64
)

// newRecord returns a record for an output; the caller assigns it a whole
// kgo.Record.
func (t *task) newRecord() *kgo.Record {
	o := &t.outputs
	if len(o.slab) == 0 {
		if o.used < len(o.slabs) {
			o.slab = o.slabs[o.used]
		} else {
			o.slab = make([]kgo.Record, slabSize)
			if len(o.slabs) < keptSlabs {
				o.slabs = append(o.slabs, o.slab)
			}
		}
		o.used++
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
		if o.usedChunks < len(o.chunks) {
			o.chunk = o.chunks[o.usedChunks][:0]
		} else {
			o.chunk = make([]byte, 0, chunkSize)
			if len(o.chunks) < keptChunks {
				o.chunks = append(o.chunks, o.chunk)
			}
		}
		o.usedChunks++
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
	b, err := e.app.AppendEncode(t.outputs.scratch[:0], v)
	if err != nil {
		return nil, err
	}
	t.outputs.scratch = b
	return t.copyBytes(b), nil
}

// Recycle implements txn.Recycler: the records Process returned are all
// produced, so their memory can be carved again.
func (t *task) Recycle() {
	o := &t.outputs
	o.slab, o.used = nil, 0
	o.chunk, o.usedChunks = nil, 0
}
