package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Expiring is a typed store of one task whose every entry carries the
// time it expires, in event time: Expire(now) removes, in expiry order,
// every entry due by now. It is what bounded, time-based state is built
// on: a dedup operator's ids (each expiring a span after it was seen), a
// window aggregation's windows (each expiring when the window closes), a
// join's buffered records.
//
// # Layout
//
// Under the store's prefix:
//
//	prefix 0x01 key                 -> expiry (8 bytes) value   the entries
//	prefix 0x00 expiry (8 bytes) key -> value                   an index by expiry
//	prefix 0x02                     -> low mark (8 bytes)
//	prefix 0x03                     -> checked mark (8 bytes)
//
// Expire walks the index from the low mark, where its last pass stopped,
// so it never iterates over the keys earlier passes deleted: its cost is
// that of the entries it removes, whatever has expired before. The low
// mark is a pending write like the deletions it covers: it commits, rolls
// back and is discarded with them, and survives a restart. Expiry times
// are milliseconds since the epoch, encoded so that their byte order is
// their order.
//
// Each index key holds a copy of its entry's value, so that a pass reads
// nothing but the index: every write keeps the index exact (an entry's
// index key, with its value, is written and deleted with it). Only a
// restore can leave an index key behind (below): the checked mark bounds
// the index keys a restore may have left, and a pass reads the entry of
// an index key at or before it to check that the entry still expires
// then.
//
// # Changelog
//
// Only the entries are changelogged: key -> expiry and value; Expire and
// Delete write tombstones, so the compacted changelog holds the live
// entries and what was removed recently. A restore (Restore) rebuilds the
// index from the restored entries. It cannot delete the index key of an
// entry that a restored record deletes or moves (a tombstone carries no
// expiry, and reading the entry back would slow every restore), so it
// raises the checked mark to the latest expiry in the index: a pass finds
// such an entry gone, or with another expiry, and only drops the index
// key.
//
// An Expiring is used by its task's goroutine only.
type Expiring[K, V any] struct {
	db        *DB
	prefix    []byte // the store's
	changelog string
	log       Changelog
	ks        Codec[K]
	vs        Codec[V]
	// next is the earliest expiry in the index at or after the low
	// mark, when known: Expire before it has nothing to do. A discard or
	// a rollback makes it unknown (the entries a pass removed come back).
	next      int64
	nextKnown bool
	// restoreLow is the low mark as the restore in progress left it
	// (restoreLowKnown false: not read yet).
	restoreLow      int64
	restoreLowKnown bool
	// checked is the checked mark (checkedKnown false: not read yet
	// since the last restore or discard).
	checked      int64
	checkedKnown bool
	// restoring is set by the first Restore since the last commit or
	// discard.
	restoring bool
	buf       []byte
	// passPoints is how many keys the last pass's iterator stepped over,
	// deleted ones included (tests).
	passPoints uint64
	// filter is the in-memory filter of the keys (KeepFilter), or nil.
	filter *keyFilter
}

const (
	expIndex   = 0x00
	expEntries = 0x01
	expLow     = 0x02
	expChecked = 0x03
)

// NewExpiring returns the expiring store called name inside db, whose
// writes are also appended to log for the changelog topic. Store names
// must be unique within a DB and stable.
func NewExpiring[K, V any](db *DB, name, changelogTopic string, log Changelog, ks Codec[K], vs Codec[V]) (*Expiring[K, V], error) {
	if name == "" || len(name) > 255 {
		return nil, fmt.Errorf("state: store name %q must have 1 to 255 bytes", name)
	}
	s := &Expiring[K, V]{db: db, prefix: StorePrefix(name), changelog: changelogTopic, log: log, ks: ks, vs: vs}
	db.listeners = append(db.listeners, s)
	return s, nil
}

func (s *Expiring[K, V]) committed() {
	s.restoreLowKnown, s.restoring = false, false
	s.filterCommitted()
}

func (s *Expiring[K, V]) rolledBack() {
	s.nextKnown = false
	s.filterUndone()
}

func (s *Expiring[K, V]) discarded() {
	s.nextKnown = false
	// A discarded restore may have raised the checked mark and lowered
	// the low mark.
	s.checkedKnown, s.restoring, s.restoreLowKnown = false, false, false
	s.filterUndone()
}

// lowKey returns the DB key of the low mark: every index key before it
// is deleted. It is a pending write like the others, so it commits,
// rolls back and is discarded with the deletions it covers; it is not
// changelogged (a restore sets it from the entries it restores).
func (s *Expiring[K, V]) lowKey() []byte {
	return append(append(s.buf[:0], s.prefix...), expLow)
}

// low returns the low mark (math.MinInt64 when none is set).
func (s *Expiring[K, V]) low() (int64, error) {
	raw, ok, err := s.db.Get(s.lowKey())
	if err != nil || !ok || len(raw) != 8 {
		return math.MinInt64, err
	}
	return int64(binary.BigEndian.Uint64(raw)), nil
}

// setLow makes ms the low mark.
func (s *Expiring[K, V]) setLow(ms int64) error {
	return s.db.write(s.lowKey(), binary.BigEndian.AppendUint64(nil, uint64(ms)))
}

// checkedKey returns the DB key of the checked mark: an index key
// expiring after it has its entry, with that expiry and value. It is set
// by a restore only, applied with it and not changelogged.
func (s *Expiring[K, V]) checkedKey() []byte {
	return append(append(s.buf[:0], s.prefix...), expChecked)
}

// checkedMark returns the checked mark (math.MinInt64 when none is set).
func (s *Expiring[K, V]) checkedMark() (int64, error) {
	if !s.checkedKnown {
		raw, ok, err := s.db.Get(s.checkedKey())
		if err != nil {
			return 0, err
		}
		s.checked, s.checkedKnown = math.MinInt64, true
		if ok && len(raw) == 8 {
			s.checked = int64(binary.BigEndian.Uint64(raw))
		}
	}
	return s.checked, nil
}

// entryKey returns the DB key of the entry of encoded key kb.
func (s *Expiring[K, V]) entryKey(kb []byte) []byte {
	s.buf = append(append(append(s.buf[:0], s.prefix...), expEntries), kb...)
	return s.buf
}

// indexKey returns a new DB key of the index entry of encoded key kb
// expiring at exp.
func (s *Expiring[K, V]) indexKey(exp int64, kb []byte) []byte {
	k := make([]byte, 0, len(s.prefix)+9+len(kb))
	k = append(append(k, s.prefix...), expIndex)
	k = binary.BigEndian.AppendUint64(k, orderedMillis(exp))
	return append(k, kb...)
}

// orderedMillis maps milliseconds to a uint64 in the same order.
func orderedMillis(ms int64) uint64 { return uint64(ms) ^ 1<<63 }

func (s *Expiring[K, V]) name() string { return string(s.prefix[1:]) }

func (s *Expiring[K, V]) encodeKey(k K) ([]byte, error) {
	kb, err := s.ks.Encode(k)
	if err != nil {
		return nil, fmt.Errorf("state: %s: encode key: %w", s.name(), err)
	}
	return kb, nil
}

// Get returns k's value and expiry, and whether k exists, as of the open
// transaction's writes. An entry past its expiry that Expire has not
// removed yet is returned: callers that decide by time compare the expiry
// with their stream time.
func (s *Expiring[K, V]) Get(k K) (v V, expires time.Time, found bool, err error) {
	kb, err := s.encodeKey(k)
	if err != nil {
		return v, expires, false, err
	}
	if may, err := s.mayHold(kb); err != nil || !may {
		return v, expires, false, err
	}
	raw, ok, err := s.db.Get(s.entryKey(kb))
	if err != nil || !ok {
		return v, expires, false, err
	}
	exp, vb, err := s.split(raw)
	if err != nil {
		return v, expires, false, err
	}
	if v, err = s.vs.Decode(vb); err != nil {
		return v, expires, false, fmt.Errorf("state: %s: decode value: %w", s.name(), err)
	}
	return v, time.UnixMilli(exp), true, nil
}

// split returns the expiry and the encoded value of an entry's DB value.
func (s *Expiring[K, V]) split(raw []byte) (int64, []byte, error) {
	return splitExpiry(s.name(), raw)
}

// Put sets k to v, expiring at expires (millisecond precision), and
// appends the change to the changelog. An earlier entry of k is replaced,
// its index key deleted.
func (s *Expiring[K, V]) Put(k K, v V, expires time.Time) error {
	kb, err := s.encodeKey(k)
	if err != nil {
		return err
	}
	exp := expires.UnixMilli()
	raw, err := encodeEntry(s.name(), s.vs, v, exp)
	if err != nil {
		return err
	}
	may, err := s.mayHold(kb)
	if err != nil {
		return err
	}
	var old []byte
	ok := false
	if may {
		if old, ok, err = s.db.Get(s.entryKey(kb)); err != nil {
			return err
		}
	}
	same := false // k is there with the same expiry: the filter has it
	if ok {
		if oldExp, _, err := s.split(old); err == nil && oldExp != exp {
			if err := s.db.Delete(s.indexKey(oldExp, kb)); err != nil {
				return err
			}
		} else if err == nil {
			same = true
		}
	}
	// The index key is new unless k is put again with the same expiry.
	if err := s.db.writeBlind(s.indexKey(exp, kb), raw[8:]); err != nil {
		return err
	}
	write := s.db.write
	if !may {
		write = s.db.writeBlind // a new key: there is no value to read for Rollback
	}
	if err := write(s.entryKey(kb), raw); err != nil {
		return err
	}
	if !same {
		s.filterAdd(kb, exp)
	}
	if low, err := s.low(); err != nil {
		return err
	} else if exp < low {
		if err := s.setLow(exp); err != nil { // a pass must find it
			return err
		}
	}
	if s.nextKnown && exp < s.next {
		s.next = exp
	}
	s.logWrite(kb, raw)
	return nil
}

// Delete removes k (and its index key) and appends a tombstone to the
// changelog.
func (s *Expiring[K, V]) Delete(k K) error {
	kb, err := s.encodeKey(k)
	if err != nil {
		return err
	}
	return s.delete(kb)
}

func (s *Expiring[K, V]) delete(kb []byte) error {
	old, ok, err := s.db.Get(s.entryKey(kb))
	if err != nil || !ok {
		return err
	}
	if exp, _, err := s.split(old); err == nil {
		if err := s.db.Delete(s.indexKey(exp, kb)); err != nil {
			return err
		}
	}
	if err := s.db.Delete(s.entryKey(kb)); err != nil {
		return err
	}
	s.logWrite(kb, nil)
	return nil
}

func (s *Expiring[K, V]) logWrite(kb, raw []byte) {
	if s.log != nil {
		s.log.Append(s.changelog, kb, raw)
	}
}

// Expire removes every entry expiring at or before now, in expiry order
// (entries of the same expiry in the byte order of their keys), calling
// each (if not nil) with the entry before it is removed; each must not
// use the store. A tombstone of every removed entry goes to the
// changelog. An error from each stops the pass and is returned; the
// entries removed before it stay removed in the pending writes.
func (s *Expiring[K, V]) Expire(now time.Time, each func(k K, v V) error) error {
	ms := now.UnixMilli()
	if s.nextKnown && s.next > ms {
		return nil
	}
	low, err := s.low()
	if err != nil {
		return err
	}
	if low > ms {
		return nil
	}
	lower := append(append(bytes.Clone(s.prefix), expIndex), make([]byte, 8)...)
	binary.BigEndian.PutUint64(lower[len(s.prefix)+1:], orderedMillis(low))
	upper := append(bytes.Clone(s.prefix), expIndex+1)
	it, err := s.db.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var (
		due   []dueEntry
		found bool
	)
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		exp := int64(binary.BigEndian.Uint64(key[len(s.prefix)+1:]) ^ 1<<63)
		if exp > ms {
			s.next, found = exp, true
			break
		}
		v, verr := it.ValueAndErr()
		if verr != nil {
			err = verr
			break
		}
		due = append(due, dueEntry{exp: exp, index: bytes.Clone(key), value: bytes.Clone(v)})
	}
	err = errors.Join(err, it.Error())
	s.passPoints = it.Stats().InternalStats.PointCount
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: %s: expire: %w", s.name(), err)
	}
	checked, err := s.checkedMark()
	if err != nil {
		return err
	}
	for _, d := range due {
		if err := s.expire(d, d.exp <= checked, each); err != nil {
			return err
		}
	}
	if err := s.setLow(ms + 1); err != nil {
		return err
	}
	s.nextKnown = true
	if !found {
		s.next = math.MaxInt64
	}
	return nil
}

// dueEntry is an index key a pass found due, with its expiry and the
// copy of the entry's value it holds.
type dueEntry struct {
	exp          int64
	index, value []byte
}

// expire removes the entry of index key d.index. If check, a restore may
// have left the index key behind: the entry is read, and removed only if
// it still expires then; otherwise the index is exact, and the entry is
// deleted unread.
func (s *Expiring[K, V]) expire(d dueEntry, check bool, each func(k K, v V) error) error {
	kb := d.index[len(s.prefix)+9:]
	vb := d.value
	if check {
		raw, ok, err := s.db.Get(s.entryKey(kb))
		if err != nil {
			return err
		}
		entryExp, entryValue, err := s.split(raw)
		if !ok || err != nil || entryExp != d.exp {
			return s.db.writeBlind(d.index, nil) // left behind: the entry is gone or moved
		}
		vb = entryValue
	}
	if each != nil {
		k, v, err := decodeEntry(s.name(), s.ks, s.vs, kb, vb)
		if err != nil {
			return err
		}
		if err := each(k, v); err != nil {
			return err
		}
	}
	if err := s.db.writeBlind(s.entryKey(kb), nil); err != nil {
		return err
	}
	s.logWrite(kb, nil)
	return s.db.writeBlind(d.index, nil)
}

// Restore writes one restored changelog record of the store (see
// DB.ApplyRestored): the entry, and its index key.
func (s *Expiring[K, V]) Restore(key, value []byte) error {
	entries := append(bytes.Clone(s.prefix), expEntries)
	if err := s.restoreChecked(); err != nil {
		return err
	}
	if value == nil {
		return s.db.ApplyRestored(entries, key, nil)
	}
	exp, vb, err := s.split(value)
	if err != nil {
		return err
	}
	if err := s.db.ApplyRestored(entries, key, value); err != nil {
		return err
	}
	if s.filter != nil {
		s.filter.built = false // built again from the entries at the next lookup
	}
	s.nextKnown = false
	if !s.restoreLowKnown {
		s.restoreLow, s.restoreLowKnown = math.MinInt64, true
		if raw, ok, err := s.db.GetApplied(s.lowKey()); err != nil {
			return err
		} else if ok && len(raw) == 8 {
			s.restoreLow = int64(binary.BigEndian.Uint64(raw))
		}
	}
	if exp < s.restoreLow {
		// A pass must find the restored entry.
		s.restoreLow = exp
		if err := s.db.ApplyRestored(s.lowKey(), nil, binary.BigEndian.AppendUint64(nil, uint64(exp))); err != nil {
			return err
		}
	}
	if exp > s.checked {
		// The entry this record replaces may have had any expiry up to
		// the latest one: a pass checks every index key up to this one.
		if err := s.setRestoredChecked(exp); err != nil {
			return err
		}
	}
	return s.db.ApplyRestored(s.indexKey(exp, nil), key, vb)
}

// restoreChecked raises the checked mark, at the first record a restore
// brings, to the latest expiry in the index: every index key there is
// may be the one of an entry a restored record deletes or moves.
// Restored records raise it further, to their expiry.
func (s *Expiring[K, V]) restoreChecked() error {
	if s.restoring {
		return nil // raised at this restore's first record
	}
	s.restoring = true
	checked, err := s.checkedMark()
	if err != nil {
		return err
	}
	lower := append(bytes.Clone(s.prefix), expIndex)
	it, err := s.db.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: append(bytes.Clone(s.prefix), expIndex+1)})
	if err != nil {
		return err
	}
	latest := int64(math.MinInt64)
	if it.Last() {
		latest = int64(binary.BigEndian.Uint64(it.Key()[len(s.prefix)+1:]) ^ 1<<63)
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: %s: restore: %w", s.name(), err)
	}
	if latest > checked {
		return s.setRestoredChecked(latest)
	}
	s.checked = checked
	return nil
}

// setRestoredChecked makes ms the checked mark, in the restore's writes.
func (s *Expiring[K, V]) setRestoredChecked(ms int64) error {
	s.checked, s.checkedKnown = ms, true
	return s.db.ApplyRestored(s.checkedKey(), nil, binary.BigEndian.AppendUint64(nil, uint64(ms)))
}
