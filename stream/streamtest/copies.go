package streamtest

import "github.com/twmb/franz-go/pkg/kgo"

// copies holds a topic's copies of the records tasks produced, as a
// broker's log does: a task reuses the memory of its output records once
// they are recycled (topology.Recycler), which the driver does after every
// input record. Copies are carved from blocks, so that copying costs no
// allocation per record; a block is freed when every copy in it has been
// read and dropped. Each topic has its own, so that the copies of a topic
// nobody reads (a changelog) never keep another's blocks alive.
type copies struct {
	recs  []kgo.Record // the rest of the current block of records
	bytes []byte       // the current block of bytes, appended to
}

const (
	copyRecords = 256      // records in a block
	copyBytes   = 16 << 10 // bytes in a block
)

// of returns a copy of r with its own key, value and headers.
func (c *copies) of(r *kgo.Record) *kgo.Record {
	if len(c.recs) == 0 {
		c.recs = make([]kgo.Record, copyRecords)
	}
	cp := &c.recs[0]
	c.recs = c.recs[1:]
	*cp = *r
	cp.Key, cp.Value = c.bytesOf(r.Key), c.bytesOf(r.Value)
	if r.Headers != nil {
		cp.Headers = make([]kgo.RecordHeader, len(r.Headers))
		for i, h := range r.Headers {
			cp.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: c.bytesOf(h.Value)}
		}
	}
	return cp
}

// bytesOf returns a copy of b: nil stays nil, empty stays empty and not
// nil, and appending to the copy never writes over another.
func (c *copies) bytesOf(b []byte) []byte {
	switch {
	case b == nil:
		return nil
	case len(b) == 0:
		return []byte{}
	case len(b) > copyBytes/4:
		return append(make([]byte, 0, len(b)), b...)
	}
	if len(b) > cap(c.bytes)-len(c.bytes) {
		c.bytes = make([]byte, 0, copyBytes)
	}
	start := len(c.bytes)
	c.bytes = append(c.bytes, b...)
	return c.bytes[start:len(c.bytes):len(c.bytes)]
}
