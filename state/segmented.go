package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Segmented is a typed store of one task whose every entry carries the
// time it expires, in event time, kept in segments of expiry time:
// Expire(now) drops, whole, every segment that ends at or before now. It
// is the store of a dedup: each id is one key (an Expiring store writes
// two, the entry and its expiry index), and expiry never reads an entry
// back. What it gives up for that: an entry outlives its expiry by up to
// a segment, and Expire removes entries by segment, in key order within
// one, not in expiry order. Get returns an entry past its expiry that
// Expire has not removed yet: callers compare the expiry with their
// stream time.
//
// # Layout
//
// Under the store's prefix:
//
//	prefix 0x01 segment (8 bytes) key -> expiry (8 bytes) value   the entries
//	prefix 0x02                       -> low mark: segment (8 bytes) [key]
//	prefix 0x03 segment (8 bytes)     -> packs of the segment written since it was last dropped (8 bytes)
//
// A segment is named by its end: the entries expiring in [e-width, e),
// e a multiple of width, are segment e (milliseconds, encoded so that
// byte order is time order), and it has ended once stream time reaches
// e-1. Named so, not numbered, a segment ends where it did when the
// store is reopened with another width (a dedup whose span changed): its
// entries leave when they would have, and new ones go to segments of the
// new width. The low mark is where the next pass starts: the first segment not dropped, and
// within it, when a pass stopped part way (ExpireSome), the last key it
// removed. A pass iterates from it, so it never walks what earlier
// passes deleted. Like Expiring's, it is a pending write that commits,
// rolls back and is discarded with the deletions it covers; a Put or a
// restore behind it moves it back to the start of the entry's segment.
//
// A key filter (see Expiring.KeepFilter) is always kept, a bloom filter
// per segment: Get probes only the segments whose filter may hold the
// key, and answers most keys the store does not hold without a database
// lookup.
//
// # Changelog
//
// The changelog is written in packs: Put appends nothing to it, but keeps
// its writes until FlushChangelog, which the runtime calls before the
// transaction ends, packs them into one record per segment and up to
// 16 KiB of writes. A dedup writes an id a record; a record per id
// doubled what the runtime produced. A pack's key is the segment (8
// bytes) and the pack's number within it (8 bytes), so that no two live
// packs share a key and compaction removes none; its value lists its
// writes in order, each an encoded key and its DB value or a delete. An
// expiry pass writes nothing per entry: when a pass begins on a segment
// that ended, each of its packs gets a tombstone, and a restore that
// meets one removes the segment (a range deletion), reading nothing (the
// entries the pass has not reached yet are not restored). A compacted
// changelog thus holds the packs of the live segments and what was
// dropped recently. The records carry the header PackedHeader;
// SegmentedChangelogEntries decodes them. Records without it (a
// changelog written before packs, key = segment and encoded key, one
// entry each) are restored by Restore, and SegmentedChangelogKey decodes
// their keys.
//
// A Segmented is used by its task's goroutine only.
type Segmented[K, V any] struct {
	db        *DB
	prefix    []byte
	changelog string
	log       Changelog
	ks        Codec[K]
	vs        Codec[V]
	width     int64       // of a segment, in milliseconds
	ka        appender[K] // ks, if it is one
	filter    *keyFilter
	buf       []byte
	kbuf      []byte // the last key encoded (encodeKey)
	vbuf      []byte // the last value encoded (Put)
	// absent is the encoded key the last lookup found absent, before any
	// write since: a Put after a Get of a new key does not probe the
	// filter again.
	absent      []byte
	absentKnown bool
	// lowSeg and lowAfter are the low mark as of the pending writes,
	// when lowKnown: a Put reads it, and a map lookup per record for it
	// would cost.
	lowSeg   int64
	lowAfter []byte
	lowKnown bool
	// restoreLow is the low mark as the restore in progress left it
	// (restoreLowKnown false: not read yet).
	restoreLow      int64
	restoreLowAfter bool // the low mark is part way through its segment
	restoreLowKnown bool
	absentHash      uint64 // the filter hash of absent

	// Writes of entries the database does not have (see segWrites):
	// active holds the open transaction's from txnStart on (from
	// recordStart on, the record's), and the committed ones before;
	// handed, when not nil, those of the apply in progress. Entry keys
	// never enter the DB's entries: reads look here, then in Pebble.
	active, handed, spare *segWrites
	txnStart, recordStart int

	ops segOps // changelog writes not packed yet (FlushChangelog)
}

const (
	segEntries = 0x01
	segLow     = 0x02
)

// NewSegmented returns the segmented store called name inside db, whose
// segments are width wide (rounded down to milliseconds, at least one),
// and whose writes are also appended to log for the changelog topic.
// Store names must be unique within a DB and stable; width may change
// from one opening to the next.
func NewSegmented[K, V any](db *DB, name, changelogTopic string, log Changelog, ks Codec[K], vs Codec[V], width time.Duration) (*Segmented[K, V], error) {
	if name == "" || len(name) > 255 {
		return nil, fmt.Errorf("state: store name %q must have 1 to 255 bytes", name)
	}
	w := max(width.Milliseconds(), 1)
	ka, _ := ks.(appender[K])
	s := &Segmented[K, V]{db: db, prefix: StorePrefix(name), changelog: changelogTopic, log: log, ks: ks, ka: ka, vs: vs,
		width: w, filter: &keyFilter{slice: w, seed: maphash.MakeSeed()}, active: &segWrites{}}
	db.listeners = append(db.listeners, s)
	db.holders = append(db.holders, s)
	return s, nil
}

// SegmentedChangelogKey splits the key of a Segmented store's changelog
// record into the segment's end (every expiry it holds is before it) and
// the encoded key.
func SegmentedChangelogKey(key []byte) (end time.Time, encoded []byte, err error) {
	if len(key) < 8 {
		return time.Time{}, nil, fmt.Errorf("state: segmented changelog key of %d bytes has no segment", len(key))
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(key) ^ 1<<63)), key[8:], nil
}

func (s *Segmented[K, V]) committed() {
	s.txnStart, s.recordStart = len(s.active.recs), len(s.active.recs)
	s.restoreLowKnown = false
	s.filter.fresh = false
	s.dropFilterSlices()
}

func (s *Segmented[K, V]) rolledBack() {
	s.db.writes -= len(s.active.recs) - s.recordStart
	s.active.truncate(s.recordStart)
	s.ops.truncate(s.ops.mark)
	s.lowKnown = false
	s.undone()
}

func (s *Segmented[K, V]) discarded() {
	s.active.truncate(s.txnStart)
	s.recordStart = s.txnStart
	s.ops.reset()
	s.restoreLowKnown = false // a discarded restore's low mark is gone
	s.lowKnown = false
	s.undone()
}

func (s *Segmented[K, V]) marked() {
	s.recordStart = len(s.active.recs)
	s.ops.mark = len(s.ops.ops)
}

func (s *Segmented[K, V]) held() int { return s.active.used }

// hand hands the committed writes (every write: there are none pending)
// to an apply, which calls the function returned on its goroutine.
func (s *Segmented[K, V]) hand() func(*pebble.Batch) error {
	if len(s.active.recs) == 0 {
		return nil
	}
	w := s.active
	s.handed, s.active, s.spare = w, cmp.Or(s.spare, &segWrites{}), nil
	s.txnStart, s.recordStart = 0, 0
	return w.writeTo
}

// handedApplied is told that the writes handed last are in the database.
func (s *Segmented[K, V]) handedApplied() {
	if s.handed == nil {
		return
	}
	if cap(s.handed.recs) <= maxSpareWrites {
		s.handed.reset()
		s.spare = s.handed
	} // else a large transaction's: not kept
	s.handed = nil
}

// maxSpareWrites bounds the writes a write set kept for reuse has room
// for.
const maxSpareWrites = 4 * DefaultMaxUnapplied

// writeEntry makes value (nil: a delete) the pending value of the entry
// of encoded key kb (filter hash h) in segment n, and, when logged, keeps
// it for the changelog's next pack (FlushChangelog).
func (s *Segmented[K, V]) writeEntry(n int64, kb []byte, h uint64, value []byte, logged bool) {
	s.db.writes++
	s.active.put(segHash(h, n), s.key(n, kb), value)
	if logged && s.log != nil {
		s.ops.add(n, kb, value)
	}
}

// readEntry returns the value of the entry of encoded key kb (filter hash
// h) in segment n, as of the pending writes.
func (s *Segmented[K, V]) readEntry(n int64, kb []byte, h uint64) ([]byte, bool, error) {
	key, sh := s.key(n, kb), segHash(h, n)
	if v, ok := s.active.get(sh, key); ok {
		return v, v != nil, nil
	}
	if s.handed != nil {
		if v, ok := s.handed.get(sh, key); ok {
			return v, v != nil, nil
		}
	}
	return s.db.getDirect(key)
}

// scanEntries is DB.scanMerged for the store's entries: the database
// merged with the writes it does not have.
func (s *Segmented[K, V]) scanEntries(lower, upper []byte, each func(key, value []byte) bool) error {
	if s.db.lost {
		return s.db.failed // as every read after a failed apply
	}
	type kv struct {
		key, value []byte
		newer      bool
	}
	var over []kv
	if s.handed != nil {
		s.handed.newest(lower, upper, func(k, v []byte) { over = append(over, kv{k, v, false}) })
	}
	s.active.newest(lower, upper, func(k, v []byte) { over = append(over, kv{k, v, true}) })
	slices.SortFunc(over, func(a, b kv) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		if a.newer == b.newer {
			return 0
		}
		if a.newer {
			return 1
		}
		return -1
	})
	merged := make([]overlay, 0, len(over))
	for i, o := range over {
		if i+1 < len(over) && bytes.Equal(over[i+1].key, o.key) {
			continue // the active set's write is newer
		}
		merged = append(merged, overlay{o.key, o.value})
	}
	return s.db.scanOverlay(lower, upper, merged, each)
}

// undone is told of a rollback or discard: a filter built since the last
// commit may lack entries the undone writes had removed (see
// Expiring.filterUndone), and a key found absent may be back.
func (s *Segmented[K, V]) undone() {
	s.absentKnown = false
	if s.filter.fresh {
		s.filter.built = false
	}
}

func (s *Segmented[K, V]) name() string { return string(s.prefix[1:]) }

// segment returns the segment of expiry exp: its end.
func (s *Segmented[K, V]) segment(exp int64) int64 { return (floorDiv(exp, s.width) + 1) * s.width }

// key returns the DB key of encoded key kb in segment n, in s.buf.
func (s *Segmented[K, V]) key(n int64, kb []byte) []byte {
	s.buf = append(append(s.buf[:0], s.prefix...), segEntries)
	s.buf = binary.BigEndian.AppendUint64(s.buf, orderedMillis(n))
	s.buf = append(s.buf, kb...) // kept: the next key reuses its room
	return s.buf
}

func (s *Segmented[K, V]) lowKey() []byte {
	return append(append(s.buf[:0], s.prefix...), segLow)
}

// low returns the low mark: the first segment not dropped
// (math.MinInt64 when none was), and the last key a pass removed from it
// (nil: none).
func (s *Segmented[K, V]) low() (n int64, after []byte, err error) {
	if s.lowKnown {
		return s.lowSeg, s.lowAfter, nil
	}
	raw, ok, err := s.db.Get(s.lowKey())
	if err != nil {
		return 0, nil, err
	}
	n, after = math.MinInt64, nil
	if ok {
		if n, after, err = decodeLow(raw); err != nil {
			return 0, nil, err
		}
	}
	s.lowSeg, s.lowAfter, s.lowKnown = n, after, true
	return n, after, nil
}

func decodeLow(raw []byte) (n int64, after []byte, err error) {
	if len(raw) < 8 {
		return 0, nil, fmt.Errorf("state: segmented store low mark of %d bytes", len(raw))
	}
	n = int64(binary.BigEndian.Uint64(raw))
	if len(raw) > 8 {
		after = raw[8:]
	}
	return n, after, nil
}

// setLow makes segment n, after encoded key after (nil: from its
// start), the low mark.
func (s *Segmented[K, V]) setLow(n int64, after []byte) error {
	raw := append(binary.BigEndian.AppendUint64(nil, uint64(n)), after...)
	if err := s.db.write(s.lowKey(), raw); err != nil {
		s.lowKnown = false
		return err
	}
	s.lowSeg, s.lowAfter, s.lowKnown = n, raw[8:], true
	if len(after) == 0 {
		s.lowAfter = nil
	}
	return nil
}

// encodeKey returns k encoded, in a buffer the next encodeKey reuses
// when the codec can append.
func (s *Segmented[K, V]) encodeKey(k K) ([]byte, error) {
	var kb []byte
	var err error
	if s.ka != nil {
		s.kbuf, err = s.ka.AppendEncode(s.kbuf[:0], k)
		kb = s.kbuf
	} else {
		kb, err = s.ks.Encode(k)
	}
	if err != nil {
		return nil, fmt.Errorf("state: %s: encode key: %w", s.name(), err)
	}
	return kb, nil
}

// find returns the segment and DB value of the entry of encoded key kb,
// as of the pending writes: the latest segment that holds it.
// h is kb's filter hash.
func (s *Segmented[K, V]) find(kb []byte) (n int64, raw []byte, h uint64, found bool, err error) {
	if s.absentKnown && bytes.Equal(s.absent, kb) {
		return 0, nil, s.absentHash, false, nil
	}
	if s.db.lost {
		return 0, nil, 0, false, s.db.failed
	}
	if !s.filter.built {
		if err := s.buildFilter(); err != nil {
			return 0, nil, 0, false, err
		}
	}
	h = s.filter.hash(kb)
	for i := len(s.filter.slices) - 1; i >= 0; i-- {
		sl := s.filter.slices[i]
		if !sl.mayHold(h) {
			continue
		}
		raw, ok, err := s.readEntry(sl.n, kb, h)
		if err != nil {
			return 0, nil, 0, false, err
		}
		if ok {
			return sl.n, raw, h, true, nil
		}
	}
	s.absent, s.absentHash, s.absentKnown = append(s.absent[:0], kb...), h, true
	return 0, nil, h, false, nil
}

// buildFilter fills the filter from the entries, as of the pending
// writes, from the low mark on.
func (s *Segmented[K, V]) buildFilter() error {
	f := s.filter
	f.slices = f.slices[:0]
	low, _, err := s.low()
	if err != nil {
		return err
	}
	lower := bytes.Clone(s.key(low, nil))
	upper := prefixEnd(append(bytes.Clone(s.prefix), segEntries))
	n := len(s.prefix) + 1
	err = s.scanEntries(lower, upper, func(k, _ []byte) bool {
		f.addTo(int64(binary.BigEndian.Uint64(k[n:])^1<<63), k[n+8:])
		return true
	})
	if err != nil {
		return fmt.Errorf("state: %s: build key filter: %w", s.name(), err)
	}
	f.built, f.fresh = true, true
	return nil
}

// dropFilterSlices drops the filters of the segments the committed passes
// dropped.
func (s *Segmented[K, V]) dropFilterSlices() {
	f := s.filter
	if !f.built || len(f.slices) == 0 {
		return
	}
	low, _, err := s.low()
	if err != nil {
		f.built = false
		return
	}
	i := 0
	for i < len(f.slices) && f.slices[i].n < low {
		i++
	}
	f.slices = append(f.slices[:0], f.slices[i:]...)
}

// Get returns k's value and expiry, and whether k exists, as of the open
// transaction's writes (an entry past its expiry that Expire has not
// dropped yet included).
func (s *Segmented[K, V]) Get(k K) (v V, expires time.Time, found bool, err error) {
	kb, err := s.encodeKey(k)
	if err != nil {
		return v, expires, false, err
	}
	_, raw, _, ok, err := s.find(kb)
	if err != nil || !ok {
		return v, expires, false, err
	}
	exp, vb, err := splitExpiry(s.name(), raw)
	if err != nil {
		return v, expires, false, err
	}
	if v, err = s.vs.Decode(vb); err != nil {
		return v, expires, false, fmt.Errorf("state: %s: decode value: %w", s.name(), err)
	}
	return v, time.UnixMilli(exp), true, nil
}

// Put sets k to v, expiring at expires (millisecond precision), and
// appends the change to the changelog: k's entry in another segment, if
// any, is deleted (a tombstone for it too).
func (s *Segmented[K, V]) Put(k K, v V, expires time.Time) error {
	kb, err := s.encodeKey(k)
	if err != nil {
		return err
	}
	exp := expires.UnixMilli()
	n := s.segment(exp)
	vb, err := s.vs.Encode(v)
	if err != nil {
		return fmt.Errorf("state: %s: encode value: %w", s.name(), err)
	}
	s.vbuf = append(binary.BigEndian.AppendUint64(s.vbuf[:0], uint64(exp)), vb...) // copied by writeEntry
	raw := s.vbuf
	old, _, h, found, err := s.find(kb)
	if err != nil {
		return err
	}
	s.absentKnown = false
	if found && old != n {
		s.writeEntry(old, kb, h, nil, true)
	}
	s.writeEntry(n, kb, h, raw, true)
	if s.filter.built {
		s.filter.addHash(n, h)
	}
	if low, after, err := s.low(); err != nil {
		return err
	} else if n < low || n == low && after != nil {
		if err := s.setLow(n, nil); err != nil { // a pass must find it
			return err
		}
	}
	return nil
}

// Expire drops every segment that ends at or before now: each entry
// expiring before the start of now's segment is removed, in segment
// order and key order within a segment, with each (if not nil) called
// before; each must not use the store. The changelog gets, at the next
// FlushChangelog, a tombstone for every pack of each segment that ended
// (not one per entry); after a restore, none of those segments' entries
// is left, removed by this pass or not yet. An error from each stops the pass and is
// returned; the entries removed before it stay removed in the pending
// writes.
func (s *Segmented[K, V]) Expire(now time.Time, each func(k K, v V) error) error {
	_, err := s.ExpireSome(now, math.MaxInt, each)
	return err
}

// ExpireSome is Expire removing at most limit entries (at least one),
// from where the last pass stopped; more reports whether entries of the
// segments that ended are left for another call. Passes of a few
// thousand entries each keep the transactions they fall in small, where
// one pass would remove a whole segment of entries in one.
func (s *Segmented[K, V]) ExpireSome(now time.Time, limit int, each func(k K, v V) error) (more bool, err error) {
	limit = max(limit, 1)
	end := now.UnixMilli() + 1 // every segment ending at or before it has ended
	low, after, err := s.low()
	if err != nil {
		return false, err
	}
	if end < low {
		return false, nil
	}
	lower := bytes.Clone(s.key(low, after))
	if after != nil {
		lower = append(lower, 0) // after the key the last pass removed
	}
	upper := bytes.Clone(s.key(end+1, nil))
	type due struct{ key, value []byte }
	var all []due
	err = s.scanEntries(lower, upper, func(k, v []byte) bool {
		if len(all) == limit {
			more = true
			return false
		}
		all = append(all, due{bytes.Clone(k), bytes.Clone(v)})
		return true
	})
	if err != nil {
		return false, fmt.Errorf("state: %s: expire: %w", s.name(), err)
	}
	n := len(s.prefix) + 1
	for _, d := range all {
		seg, kb := int64(binary.BigEndian.Uint64(d.key[n:])^1<<63), d.key[n+8:]
		if each != nil {
			_, vb, err := splitExpiry(s.name(), d.value)
			if err != nil {
				return false, err
			}
			k, v, err := decodeEntry(s.name(), s.ks, s.vs, kb, vb)
			if err != nil {
				return false, err
			}
			if err := each(k, v); err != nil {
				return false, err
			}
		}
		// No changelog write: the segment's packs get tombstones (the
		// drop below).
		s.writeEntry(seg, kb, s.filter.hash(kb), nil, false)
	}
	if s.log != nil {
		s.ops.drop(end + 1)
	}
	if more {
		last := all[len(all)-1].key
		return true, s.setLow(int64(binary.BigEndian.Uint64(last[n:])^1<<63), last[n+8:])
	}
	return false, s.setLow(end+1, nil)
}

// Scan calls each with every entry, as of the pending writes, in segment
// order and key order within a segment: those past their expiry that
// Expire has not dropped yet included (compare expires with the stream
// time to skip them). An error from each stops the scan and is returned;
// each must not write to the store.
func (s *Segmented[K, V]) Scan(each func(k K, v V, expires time.Time) error) error {
	entries := append(bytes.Clone(s.prefix), segEntries)
	n := len(s.prefix) + 1
	var eachErr error
	err := s.scanEntries(entries, prefixEnd(entries), func(key, raw []byte) bool {
		exp, vb, err := splitExpiry(s.name(), raw)
		if err == nil {
			var k K
			var v V
			if k, v, err = decodeEntry(s.name(), s.ks, s.vs, key[n+8:], vb); err == nil {
				err = each(k, v, time.UnixMilli(exp))
			}
		}
		eachErr = err
		return err == nil
	})
	return errors.Join(eachErr, err)
}

// Restore writes one restored changelog record of the store (see
// DB.ApplyRestored).
func (s *Segmented[K, V]) Restore(key, value []byte) error {
	if len(key) < 8 {
		return fmt.Errorf("state: %s: changelog key of %d bytes has no segment", s.name(), len(key))
	}
	s.filter.built, s.absentKnown, s.lowKnown = false, false, false // built again from the entries at the next lookup
	if err := s.db.ApplyRestored(append(bytes.Clone(s.prefix), segEntries), key, value); err != nil || value == nil {
		return err
	}
	return s.restoredBehindLow(int64(binary.BigEndian.Uint64(key) ^ 1<<63))
}

// restoredBehindLow moves the low mark back to segment n when an entry
// restored in it is behind the mark: a pass must find it.
func (s *Segmented[K, V]) restoredBehindLow(n int64) error {
	if !s.restoreLowKnown {
		s.restoreLow, s.restoreLowAfter, s.restoreLowKnown = math.MinInt64, false, true
		if raw, ok, err := s.db.GetApplied(s.lowKey()); err != nil {
			return err
		} else if ok {
			low, after, err := decodeLow(raw)
			if err != nil {
				return err
			}
			s.restoreLow, s.restoreLowAfter = low, after != nil
		}
	}
	if n < s.restoreLow || n == s.restoreLow && s.restoreLowAfter {
		// A pass must find the restored entry.
		s.restoreLow, s.restoreLowAfter = n, false
		return s.db.ApplyRestored(s.lowKey(), nil, binary.BigEndian.AppendUint64(nil, uint64(n)))
	}
	return nil
}

// encodeEntry returns the DB value of an entry of store expiring at exp
// with value v: the expiry (8 bytes), then v encoded.
func encodeEntry[V any](store string, vs Codec[V], v V, exp int64) ([]byte, error) {
	vb, err := vs.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("state: %s: encode value: %w", store, err)
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(vb)), uint64(exp)), vb...), nil
}

// decodeEntry decodes the encoded key kb and value vb of an entry of
// store.
func decodeEntry[K, V any](store string, ks Codec[K], vs Codec[V], kb, vb []byte) (k K, v V, err error) {
	if k, err = ks.Decode(kb); err != nil {
		return k, v, fmt.Errorf("state: %s: decode key: %w", store, err)
	}
	if v, err = vs.Decode(vb); err != nil {
		return k, v, fmt.Errorf("state: %s: decode value: %w", store, err)
	}
	return k, v, nil
}

// splitExpiry returns the expiry and the encoded value of an entry's DB
// value.
func splitExpiry(store string, raw []byte) (int64, []byte, error) {
	if len(raw) < 8 {
		return 0, nil, fmt.Errorf("state: %s: entry of %d bytes has no expiry", store, len(raw))
	}
	return int64(binary.BigEndian.Uint64(raw)), raw[8:], nil
}
