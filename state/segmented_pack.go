package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// PackedHeader is the header key that marks the changelog records of a
// Segmented store written in packs (see Segmented, "Changelog"): a
// runtime sets it on every record of such a store's changelog, and hands
// a record that carries it to RestorePacked, one without it to Restore.
const PackedHeader = "sluice-packed"

// packBytes is the size past which a pack is closed and a new one begun:
// a few hundred ids a record, far below any max.message.bytes.
const packBytes = 16 << 10

// segCount is the key, under the store's prefix, of a segment's pack
// count: prefix 0x03 segment (8 bytes) -> the number of packs of the
// segment written since it was last dropped (8 bytes).
const segCount = 0x03

// segOps holds a Segmented store's changelog writes that FlushChangelog
// has not packed yet, in the order they were made: entry writes (a value,
// or a delete) and drops (every segment before seg ended: its packs get
// tombstones). Keys and values are in one arena. mark is where the record
// being processed began (a rollback truncates to it).
type segOps struct {
	arena []byte
	ops   []segOp
	mark  int
}

type segOp struct {
	seg  int64
	drop bool // segments before seg were dropped; no key or value
	off  uint32
	klen uint32
	vlen int32 // -1: a delete
}

func (o *segOps) add(seg int64, kb, value []byte) {
	op := segOp{seg: seg, off: uint32(len(o.arena)), klen: uint32(len(kb)), vlen: -1}
	o.arena = append(o.arena, kb...)
	if value != nil {
		op.vlen = int32(len(value))
		o.arena = append(o.arena, value...)
	}
	o.ops = append(o.ops, op)
}

// drop notes that every segment before seg has ended: its packs get
// tombstones. A drop right after one as far is not repeated.
func (o *segOps) drop(seg int64) {
	if k := len(o.ops); k > 0 && o.ops[k-1].drop && o.ops[k-1].seg >= seg {
		return
	}
	o.ops = append(o.ops, segOp{seg: seg, drop: true, off: uint32(len(o.arena))})
}

func (o *segOps) truncate(n int) {
	if n >= len(o.ops) {
		return
	}
	o.arena = o.arena[:o.ops[n].off]
	o.ops = o.ops[:n]
}

func (o *segOps) reset() {
	o.arena, o.ops, o.mark = o.arena[:0], o.ops[:0], 0
}

// Unflushed reports how many changelog writes the store holds that
// FlushChangelog has not handed to the changelog yet. A runtime checks it
// is 0 before it commits the store's writes.
func (s *Segmented[K, V]) Unflushed() int { return len(s.ops.ops) }

// FlushChangelog hands the store's changelog writes since the last flush
// to the changelog, packed: one record per segment and up to 16 KiB of
// writes, whose key is the segment and the pack's number within it, and
// whose value lists the writes in the order they were made
// (SegmentedChangelogEntries decodes it). Each segment an expiry pass
// began dropping gets a tombstone for each of its packs. The runtime
// calls it after each poll's records and before the transaction ends,
// between records: Put and Expire append nothing to the changelog
// themselves, so that a record's writes are undone with it (a rollback)
// before anything was appended. An error
// means the store's database failed: the transaction must not commit.
func (s *Segmented[K, V]) FlushChangelog() error {
	if len(s.ops.ops) == 0 {
		return nil
	}
	defer s.ops.reset()
	if s.log == nil {
		return nil
	}
	type open struct {
		seg   int64
		value []byte
	}
	var packs []open // at most a few: the segments written since the last flush
	emit := func(i int) error {
		p := packs[i]
		packs = append(packs[:i], packs[i+1:]...)
		return s.emitPack(p.seg, p.value)
	}
	for _, op := range s.ops.ops {
		if op.drop {
			for i := 0; i < len(packs); {
				if packs[i].seg < op.seg {
					if err := emit(i); err != nil {
						return err
					}
					continue
				}
				i++
			}
			if err := s.dropPacks(op.seg); err != nil {
				return err
			}
			continue
		}
		i := 0
		for i < len(packs) && packs[i].seg != op.seg {
			i++
		}
		if i == len(packs) {
			packs = append(packs, open{seg: op.seg})
		}
		kb := s.ops.arena[op.off : op.off+op.klen]
		p := &packs[i]
		p.value = binary.AppendUvarint(p.value, uint64(len(kb)))
		p.value = append(p.value, kb...)
		p.value = binary.AppendUvarint(p.value, uint64(op.vlen+1)) // 0: a delete
		if op.vlen >= 0 {
			start := op.off + op.klen
			p.value = append(p.value, s.ops.arena[start:start+uint32(op.vlen)]...)
		}
		if len(p.value) >= packBytes {
			if err := emit(i); err != nil {
				return err
			}
		}
	}
	for len(packs) > 0 {
		if err := emit(0); err != nil {
			return err
		}
	}
	return nil
}

// countKey returns the DB key of segment n's pack count.
func (s *Segmented[K, V]) countKey(n int64) []byte {
	k := append(append(make([]byte, 0, len(s.prefix)+9), s.prefix...), segCount)
	return binary.BigEndian.AppendUint64(k, orderedMillis(n))
}

// emitPack appends a pack of segment n to the changelog, numbered by the
// segment's pack count, which it increments.
func (s *Segmented[K, V]) emitPack(n int64, value []byte) error {
	ck := s.countKey(n)
	raw, ok, err := s.db.Get(ck)
	if err != nil {
		return fmt.Errorf("state: %s: read a pack count: %w", s.name(), err)
	}
	var seq uint64
	if ok {
		if len(raw) != 8 {
			return fmt.Errorf("state: %s: pack count of %d bytes", s.name(), len(raw))
		}
		seq = binary.BigEndian.Uint64(raw)
	}
	if err := s.db.write(ck, binary.BigEndian.AppendUint64(nil, seq+1)); err != nil {
		return err
	}
	s.log.Append(s.changelog, packKey(n, seq), value)
	return nil
}

func packKey(n int64, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), orderedMillis(n)), seq)
}

// dropPacks appends a tombstone for every pack of the segments before
// low, and forgets their counts.
func (s *Segmented[K, V]) dropPacks(low int64) error {
	lower := append(append([]byte(nil), s.prefix...), segCount)
	upper := s.countKey(low)
	type dropped struct {
		key   []byte
		n     int64
		count uint64
	}
	var all []dropped
	var bad error
	err := s.db.scanMerged(lower, upper, func(k, v []byte) bool {
		if len(k) != len(lower)+8 || len(v) != 8 {
			bad = fmt.Errorf("state: %s: pack count key of %d bytes, value of %d", s.name(), len(k), len(v))
			return false
		}
		n := int64(binary.BigEndian.Uint64(k[len(lower):]) ^ 1<<63)
		all = append(all, dropped{key: append([]byte(nil), k...), n: n, count: binary.BigEndian.Uint64(v)})
		return true
	})
	if err = errors.Join(err, bad); err != nil {
		return fmt.Errorf("state: %s: read pack counts: %w", s.name(), err)
	}
	for _, d := range all {
		for seq := range d.count {
			s.log.Append(s.changelog, packKey(d.n, seq), nil)
		}
		if err := s.db.write(d.key, nil); err != nil {
			return err
		}
	}
	return nil
}

// RestorePacked writes one restored changelog record of the store written
// in packs (its PackedHeader set): a pack's writes, in order, or for a
// pack's tombstone, the removal of its whole segment (a segment's packs
// get tombstones when it is dropped, and only then). Like Restore, it
// reads nothing but the low mark.
func (s *Segmented[K, V]) RestorePacked(key, value []byte) error {
	if len(key) != 16 {
		return fmt.Errorf("state: %s: packed changelog key of %d bytes (want a segment and a pack number, 16)", s.name(), len(key))
	}
	s.filter.built, s.absentKnown, s.lowKnown = false, false, false
	n := int64(binary.BigEndian.Uint64(key) ^ 1<<63)
	seq := binary.BigEndian.Uint64(key[8:])
	countKey := s.countKey(n)
	if value == nil {
		entries := s.key(n, nil)
		lower := append([]byte(nil), entries...)
		if err := s.db.restoreDeleteRange(lower, prefixEnd(entries)); err != nil {
			return err
		}
		return s.db.ApplyRestored(countKey, nil, nil)
	}
	entries := append(append([]byte(nil), s.prefix...), segEntries)
	k := binary.BigEndian.AppendUint64(nil, orderedMillis(n))
	err := decodePack(value, func(kb, v []byte) error {
		k = append(k[:8], kb...)
		return s.db.ApplyRestored(entries, k, v)
	})
	if err != nil {
		return fmt.Errorf("state: %s: pack %d of segment %v: %w", s.name(), seq, time.UnixMilli(n).UTC(), err)
	}
	// The count only grows: packs of a segment come in order, and a
	// tombstone (above) resets it.
	if err := s.db.ApplyRestored(countKey, nil, binary.BigEndian.AppendUint64(nil, seq+1)); err != nil {
		return err
	}
	return s.restoredBehindLow(n)
}

// decodePack calls each with every write of a pack, in order (a nil value:
// a delete).
func decodePack(value []byte, each func(kb, v []byte) error) error {
	for len(value) > 0 {
		kl, n := binary.Uvarint(value)
		if n <= 0 || uint64(len(value)-n) < kl {
			return errors.New("truncated pack (key)")
		}
		kb := value[n : n+int(kl)]
		value = value[n+int(kl):]
		vl, n := binary.Uvarint(value)
		if n <= 0 || uint64(len(value)-n) < vl-min(vl, 1) {
			return errors.New("truncated pack (value)")
		}
		value = value[n:]
		var v []byte
		if vl > 0 {
			v, value = value[:vl-1:vl-1], value[vl-1:]
		}
		if err := each(kb, v); err != nil {
			return err
		}
	}
	return nil
}

// SegmentedWrite is one write of a Segmented store's packed changelog
// record: the encoded key, and its DB value (the expiry in milliseconds,
// 8 bytes big-endian, then the encoded value), nil for a delete.
type SegmentedWrite struct {
	Key, Value []byte
}

// SegmentedChangelogEntries decodes a Segmented store's changelog record
// written in packs (the record carries PackedHeader): the segment's end,
// the pack's number within the segment, and its writes in order. A
// tombstone (value nil) has no writes: it means the whole segment was
// dropped. The writes alias value.
func SegmentedChangelogEntries(key, value []byte) (end time.Time, pack uint64, writes []SegmentedWrite, err error) {
	if len(key) != 16 {
		return time.Time{}, 0, nil, fmt.Errorf("state: packed changelog key of %d bytes (want 16)", len(key))
	}
	end = time.UnixMilli(int64(binary.BigEndian.Uint64(key) ^ 1<<63))
	pack = binary.BigEndian.Uint64(key[8:])
	err = decodePack(value, func(kb, v []byte) error {
		writes = append(writes, SegmentedWrite{Key: kb, Value: v})
		return nil
	})
	return end, pack, writes, err
}
