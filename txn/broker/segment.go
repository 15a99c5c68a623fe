package broker

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// crc32c is the checksum of record batches (Castagnoli) and of kfake's
// index entries.
var crc32c = crc32.MakeTable(crc32.Castagnoli)

// Control batch types, as the key of a control record names them.
const (
	controlAbort  = 0
	controlCommit = 1
	notControl    = -1
)

// segmentBatch is what recovery reads of one record batch in a segment
// file of kfake's data dir.
type segmentBatch struct {
	firstOffset     int64
	lastOffsetDelta int32
	leaderEpoch     int32 // PartitionLeaderEpoch
	maxTimestamp    int64
	producerID      int64
	producerEpoch   int16
	transactional   bool
	size            int64 // bytes in the segment
	// control is controlAbort or controlCommit for a control batch,
	// notControl for data.
	control int
}

// nextOffset returns the offset after the batch.
func (b segmentBatch) nextOffset() int64 { return b.firstOffset + int64(b.lastOffsetDelta) + 1 }

// segmentPath returns the path of the segment file starting at base.
func segmentPath(dir string, base int64) string {
	return filepath.Join(dir, strconv.FormatInt(base, 10)+".dat")
}

// indexPath returns the path of the index file of the segment starting at
// base: kfake keeps one 15-byte entry per batch there, in batch order.
func indexPath(dir string, base int64) string {
	return filepath.Join(dir, strconv.FormatInt(base, 10)+".idx")
}

// readSegment reads the record batches of one segment file, in order, and
// the byte length of the batches that are whole and pass their CRC check.
// A torn or corrupt batch ends the read, as it ends kfake's load (which
// truncates the file there).
func readSegment(path string) ([]segmentBatch, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var (
		batches []segmentBatch
		valid   int64
		buf     []byte
	)
	// Batch layout: FirstOffset 0, Length 8, PartitionLeaderEpoch 12,
	// Magic 16, CRC 17 (over what follows), Attributes 21,
	// LastOffsetDelta 23, MaxTimestamp 35, ProducerID 43, ProducerEpoch 51, NumRecords 57,
	// the records 61. The batch is 12+Length bytes.
	var head [12]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return batches, valid, nil // EOF, or a torn header
		}
		length := int(binary.BigEndian.Uint32(head[8:]))
		if length < 61-12 || length > 1<<30 {
			return batches, valid, nil
		}
		buf = slices.Grow(buf[:0], 12+length)[:12+length]
		copy(buf, head[:])
		if _, err := io.ReadFull(r, buf[12:]); err != nil {
			return batches, valid, nil // a torn batch
		}
		if binary.BigEndian.Uint32(buf[17:]) != crc32.Checksum(buf[21:], crc32c) {
			return batches, valid, nil
		}
		attrs := binary.BigEndian.Uint16(buf[21:])
		b := segmentBatch{
			firstOffset:     int64(binary.BigEndian.Uint64(buf[0:])),
			lastOffsetDelta: int32(binary.BigEndian.Uint32(buf[23:])),
			leaderEpoch:     int32(binary.BigEndian.Uint32(buf[12:])),
			maxTimestamp:    int64(binary.BigEndian.Uint64(buf[35:])),
			producerID:      int64(binary.BigEndian.Uint64(buf[43:])),
			producerEpoch:   int16(binary.BigEndian.Uint16(buf[51:])),
			transactional:   attrs&0x10 != 0,
			size:            int64(len(buf)),
			control:         notControl,
		}
		if attrs&0x20 != 0 {
			b.control = controlType(buf[61:])
		}
		batches = append(batches, b)
		valid += int64(len(buf))
	}
}

// controlType returns the type of the first control record of a batch's
// records (varint-framed, after the batch header), controlAbort when it
// cannot be read, as kfake's load takes an unreadable marker for an abort.
func controlType(records []byte) int {
	var rec kmsg.Record
	if rec.ReadFrom(records) != nil {
		return controlAbort
	}
	var key kmsg.ControlRecordKey
	if key.ReadFrom(rec.Key) != nil || key.Type != kmsg.ControlRecordKeyTypeCommit {
		return controlAbort
	}
	return controlCommit
}

// indexEntrySize is the size of an entry of kfake's segment index.
const indexEntrySize = 15

// indexEntry returns kfake's index entry of batch b: a format version (1),
// a checksum byte, the leader epoch the batch was written at (its
// PartitionLeaderEpoch), the largest timestamp up to and including it
// (little endian; kfake recomputes it on load), and whether it was
// produced in a transaction (transactional data: control batches are
// not).
func indexEntry(b segmentBatch, maxEarlier int64) [indexEntrySize]byte {
	var e [indexEntrySize]byte
	e[0] = 1
	binary.LittleEndian.PutUint32(e[2:], uint32(b.leaderEpoch))
	binary.LittleEndian.PutUint64(e[6:], uint64(maxEarlier))
	if b.transactional && b.control == notControl {
		e[14] = 1
	}
	e[1] = byte(crc32.Checksum(e[2:], crc32c))
	return e
}

// segmentIndex returns the index entries of batches, in order.
func segmentIndex(batches []segmentBatch) []byte {
	out := make([]byte, 0, len(batches)*indexEntrySize)
	var maxEarlier int64 = -1
	for _, b := range batches {
		maxEarlier = max(maxEarlier, b.maxTimestamp)
		e := indexEntry(b, maxEarlier)
		out = append(out, e[:]...)
	}
	return out
}
