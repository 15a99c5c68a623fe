package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/window"
)

// Joined holds the serdes a stream-stream join buffers its records with:
// the key's, the value's of the stream joined from (Value) and the value's
// of the stream joined with (Other). JoinedWith infers the types.
type Joined[K, V, VO any] struct {
	Key   serde.Serde[K]
	Value serde.Serde[V]
	Other serde.Serde[VO]
}

// JoinedWith returns the serdes of a stream-stream join.
func JoinedWith[K, V, VO any](key serde.Serde[K], value serde.Serde[V], other serde.Serde[VO]) Joined[K, V, VO] {
	return Joined[K, V, VO]{Key: key, Value: value, Other: other}
}

// JoinStream joins s with other, a stream with the same key type: for each
// pair of records of one key whose timestamps are within win (a record of
// s at ts and one of other in [ts-win.Before, ts+win.After], bounds
// included), it emits joiner(key, value, otherValue), timestamped with the
// later of the two. Pairs are emitted as soon as their second record
// arrives, in any order of arrival, and only while both records' join
// windows are open (see window.Join): a record arriving after its own
// window has closed is late, dropped and counted (TaskStats.Late).
//
// The name is required: both streams are buffered, each in a store named
// `<name>-left` and `<name>-right` (changelogged to
// `<app-id>-<name>-left-changelog` and `-right-changelog`), with the serdes
// of joined. A record stays buffered until its window closes. Tombstones
// (records of a Table.ToStream) are ignored.
//
// The two streams must be co-partitioned: same key, same partition count
// of their source topics (checked when a worker starts); after an
// operator that may change keys, Repartition first.
func (s Stream[K, V]) JoinStream[VO, VR any](name string, other Stream[K, VO], win window.Join, joiner func(key K, value V, otherValue VO) VR, joined Joined[K, V, VO]) Stream[K, VR] {
	if joiner == nil {
		s.b.errorf("JoinStream: joiner must not be nil")
	}
	return joinStreams(s, other, win, innerJoin, func(k K, v V, _ bool, vo VO, _ bool) VR { return joiner(k, v, vo) }, joined, "joinstream", named(name))
}

// LeftJoinStream is JoinStream that also emits every record of s that
// found no match: joiner(key, value, zero, false), once, when the record's
// join window closes (stream time passes ts + win.After + win.Grace),
// never before, so that a match arriving later within the window is not
// preceded by a spurious unmatched result (as Kafka Streams since 3.1).
// Records of other without a match are not emitted. A pair is emitted
// with found true as soon as its second record arrives.
func (s Stream[K, V]) LeftJoinStream[VO, VR any](name string, other Stream[K, VO], win window.Join, joiner func(key K, value V, otherValue VO, found bool) VR, joined Joined[K, V, VO]) Stream[K, VR] {
	if joiner == nil {
		s.b.errorf("LeftJoinStream: joiner must not be nil")
	}
	return joinStreams(s, other, win, leftJoin, func(k K, v V, _ bool, vo VO, found bool) VR { return joiner(k, v, vo, found) }, joined, "leftjoinstream", named(name))
}

// OuterJoinStream is LeftJoinStream that also emits the records of other
// without a match, when their join window closes (ts + win.Before +
// win.Grace): joiner(key, zero, false, otherValue, true). Matched pairs
// have hasValue and hasOther both true.
func (s Stream[K, V]) OuterJoinStream[VO, VR any](name string, other Stream[K, VO], win window.Join, joiner func(key K, value V, hasValue bool, otherValue VO, hasOther bool) VR, joined Joined[K, V, VO]) Stream[K, VR] {
	if joiner == nil {
		s.b.errorf("OuterJoinStream: joiner must not be nil")
	}
	return joinStreams(s, other, win, outerJoin, joiner, joined, "outerjoinstream", named(name))
}

type joinKind int

const (
	innerJoin joinKind = iota
	leftJoin
	outerJoin
)

// joinStreams adds the node behind JoinStream, LeftJoinStream and
// OuterJoinStream. joiner takes the outer join's form.
func joinStreams[K, V, VO, VR any](s Stream[K, V], other Stream[K, VO], win window.Join, kind joinKind, joiner func(K, V, bool, VO, bool) VR, joined Joined[K, V, VO], op string, opts []nodeOption) Stream[K, VR] {
	b := s.b
	o := b.stateful(op, "its two buffer stores and their changelogs", opts)
	if err := win.Validate(); err != nil {
		b.errorf("%s %s: %v", op, o.name, err)
	}
	if joined.Key == nil || joined.Value == nil || joined.Other == nil {
		b.errorf("%s %s: the Joined serdes must not be nil", op, o.name)
	}
	if other.b != s.b {
		b.errorf("%s %s: the other stream comes from another Builder", op, o.name)
		other = Stream[K, VO]{b: b, out: &outlet[K, VO]{node: &node{name: "foreign"}}}
	}
	for _, side := range []*node{s.out.node, other.out.node} {
		if side.rekeyed {
			b.errorf("%s after %s, which may change keys: call Repartition before joining so that keys and partitions match", op, side.name)
		}
	}
	left := newJoinBuffer[K, V](b, o.name+"-left", joined.Key, joined.Value)
	right := newJoinBuffer[K, VO](b, o.name+"-right", joined.Key, joined.Other)
	n := b.add(kindProcessor, op, append(opts, WithStores(left, right)), s.out.node, other.out.node)
	spec := &streamJoinSpec[K, V, VO, VR]{win: win, kind: kind, joiner: joiner, left: left.s, right: right.s}
	spec.out.node = n
	s.out.children = append(s.out.children, joinLeftInlet[K, V, VO, VR]{spec})
	other.out.children = append(other.out.children, joinRightInlet[K, V, VO, VR]{spec})
	return Stream[K, VR]{b: b, out: &spec.out}
}

type streamJoinSpec[K, V, VO, VR any] struct {
	win         window.Join
	kind        joinKind
	joiner      func(K, V, bool, VO, bool) VR
	left, right *storeSpec
	out         outlet[K, VR]
}

// instance returns the join's runtime node in t, made once: both inputs
// reach it.
func (s *streamJoinSpec[K, V, VO, VR]) instance(t *task) (*streamJoinNode[K, V, VO, VR], error) {
	if n, ok := t.instances[s.out.node]; ok {
		return n.(*streamJoinNode[K, V, VO, VR]), nil
	}
	next, err := s.out.build(t)
	if err != nil {
		return nil, err
	}
	n := &streamJoinNode[K, V, VO, VR]{t: t, spec: s, next: next,
		left:  t.stores[s.left].(*state.Expiring[joinKey[K], joinValue[V]]),
		right: t.stores[s.right].(*state.Expiring[joinKey[K], joinValue[VO]])}
	if s.kind != innerJoin {
		n.leftClosed = n.emitUnmatchedLeft
	}
	if s.kind == outerJoin {
		n.rightClosed = n.emitUnmatchedRight
	}
	t.instances[s.out.node] = n
	return n, nil
}

type joinLeftInlet[K, V, VO, VR any] struct{ s *streamJoinSpec[K, V, VO, VR] }

func (i joinLeftInlet[K, V, VO, VR]) instantiate(t *task) (sink[K, V], error) {
	n, err := i.s.instance(t)
	if err != nil {
		return nil, err
	}
	return sinkFunc[K, V](n.pushLeft), nil
}

type joinRightInlet[K, V, VO, VR any] struct{ s *streamJoinSpec[K, V, VO, VR] }

func (i joinRightInlet[K, V, VO, VR]) instantiate(t *task) (sink[K, VO], error) {
	n, err := i.s.instance(t)
	if err != nil {
		return nil, err
	}
	return sinkFunc[K, VO](n.pushRight), nil
}

// streamJoinNode is a stream-stream join in one task. Each side's records
// wait in that side's buffer until their join window closes; a record
// looks up its matches in the other side's buffer with one range scan.
//
// The buffers are the outer join's memory too: an entry carries whether
// it has been matched, and when its window closes (Expire), a left (or, in
// an outer join, right) entry never matched is emitted alone. A buffered
// entry's expiry is the moment its window closes, so a range scan after
// Expire sees exactly the records whose windows are still open.
type streamJoinNode[K, V, VO, VR any] struct {
	t     *task
	spec  *streamJoinSpec[K, V, VO, VR]
	next  sink[K, VR]
	left  *state.Expiring[joinKey[K], joinValue[V]]
	right *state.Expiring[joinKey[K], joinValue[VO]]
	// leftClosed and rightClosed emit an entry whose window closed
	// unmatched; nil when the join does not emit that side alone.
	leftClosed  func(joinKey[K], joinValue[V]) error
	rightClosed func(joinKey[K], joinValue[VO]) error
	lbuf        []bufferedMatch[K, VO] // matches of a left record, reused
	rbuf        []bufferedMatch[K, V]
}

// bufferedMatch is an entry of a buffer that a new record matched.
type bufferedMatch[K, V any] struct {
	key     joinKey[K]
	value   joinValue[V]
	expires time.Time
}

func (n *streamJoinNode[K, V, VO, VR]) pushLeft(r Record[K, V]) error {
	if r.deleted {
		return nil
	}
	win := n.spec.win
	if err := n.expire(); err != nil {
		return err
	}
	closes := win.LeftClosesAt(r.ts)
	if n.t.streamTime.After(closes) {
		n.t.stats.Late++
		return nil
	}
	var err error
	n.lbuf, err = lookup(n.right, r.key, r.ts.Add(-win.Before), r.ts.Add(win.After), n.lbuf[:0])
	if err != nil {
		return err
	}
	if err := buffer(n.left, r.key, r.ts, r.value, len(n.lbuf) > 0, closes); err != nil {
		return err
	}
	for i := range n.lbuf {
		m := &n.lbuf[i]
		vr := n.spec.joiner(r.key, r.value, true, m.value.value, true)
		if err := n.next.push(Record[K, VR]{key: r.key, value: vr, ts: later(r.ts, m.key.ts), headers: r.headers, origin: r.origin}); err != nil {
			return err
		}
		if n.rightClosed != nil && !m.value.matched {
			if err := n.right.Put(m.key, joinValue[VO]{matched: true, value: m.value.value}, m.expires); err != nil {
				return err
			}
		}
	}
	clear(n.lbuf)
	return nil
}

func (n *streamJoinNode[K, V, VO, VR]) pushRight(r Record[K, VO]) error {
	if r.deleted {
		return nil
	}
	win := n.spec.win
	if err := n.expire(); err != nil {
		return err
	}
	closes := win.RightClosesAt(r.ts)
	if n.t.streamTime.After(closes) {
		n.t.stats.Late++
		return nil
	}
	var err error
	n.rbuf, err = lookup(n.left, r.key, r.ts.Add(-win.After), r.ts.Add(win.Before), n.rbuf[:0])
	if err != nil {
		return err
	}
	if err := buffer(n.right, r.key, r.ts, r.value, len(n.rbuf) > 0, closes); err != nil {
		return err
	}
	for i := range n.rbuf {
		m := &n.rbuf[i]
		vr := n.spec.joiner(r.key, m.value.value, true, r.value, true)
		if err := n.next.push(Record[K, VR]{key: r.key, value: vr, ts: later(r.ts, m.key.ts), headers: r.headers, origin: r.origin}); err != nil {
			return err
		}
		if n.leftClosed != nil && !m.value.matched {
			if err := n.left.Put(m.key, joinValue[V]{matched: true, value: m.value.value}, m.expires); err != nil {
				return err
			}
		}
	}
	clear(n.rbuf)
	return nil
}

// expire removes the entries whose windows stream time has closed, left
// buffer first, emitting those a left or outer join emits alone.
func (n *streamJoinNode[K, V, VO, VR]) expire() error {
	if err := n.left.Expire(n.t.streamTime, n.leftClosed); err != nil {
		return err
	}
	return n.right.Expire(n.t.streamTime, n.rightClosed)
}

func (n *streamJoinNode[K, V, VO, VR]) emitUnmatchedLeft(k joinKey[K], v joinValue[V]) error {
	if v.matched {
		return nil
	}
	var zero VO
	return n.next.push(Record[K, VR]{key: k.key, value: n.spec.joiner(k.key, v.value, true, zero, false), ts: k.ts})
}

func (n *streamJoinNode[K, V, VO, VR]) emitUnmatchedRight(k joinKey[K], v joinValue[VO]) error {
	if v.matched {
		return nil
	}
	var zero V
	return n.next.push(Record[K, VR]{key: k.key, value: n.spec.joiner(k.key, zero, false, v.value, true), ts: k.ts})
}

// lookup appends to dst the entries of buf with key k and a timestamp in
// [from, to], in timestamp order: one range scan.
func lookup[K, V any](buf *state.Expiring[joinKey[K], joinValue[V]], k K, from, to time.Time, dst []bufferedMatch[K, V]) ([]bufferedMatch[K, V], error) {
	lo := joinKey[K]{key: k, ts: from}
	hi := joinKey[K]{key: k, ts: to.Add(time.Millisecond)}
	it := buf.Range(&lo, &hi)
	for it.Next() {
		dst = append(dst, bufferedMatch[K, V]{key: it.Key(), value: it.Value(), expires: it.Expires()})
	}
	return dst, it.Close()
}

// buffer adds a record to buf, expiring when its window closes (the
// entry is removed once stream time is past closes), under the first
// sequence number its key and timestamp do not use yet: records of one
// key and timestamp are all kept, and the number depends on the state
// alone, so a replay numbers them the same way.
func buffer[K, V any](buf *state.Expiring[joinKey[K], joinValue[V]], k K, ts time.Time, v V, matched bool, closes time.Time) error {
	key := joinKey[K]{key: k, ts: ts}
	for {
		_, _, found, err := buf.Get(key)
		if err != nil {
			return err
		}
		if !found {
			break
		}
		key.seq++
	}
	return buf.Put(key, joinValue[V]{matched: matched, value: v}, closes.Add(time.Millisecond))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// joinBuffer is a declared join buffer: one side's records by key,
// timestamp and sequence number, each expiring when its window closes.
type joinBuffer[K, V any] struct{ s *storeSpec }

func (s joinBuffer[K, V]) spec() *storeSpec { return s.s }

func newJoinBuffer[K, V any](b *Builder, name string, ks serde.Serde[K], vs serde.Serde[V]) joinBuffer[K, V] {
	s := &storeSpec{name: name}
	s.open = func(t *task) (any, error) {
		topic := s.changelogTopic(b.appID)
		return state.NewExpiring(t.db, name, topic, t.newChangelogWriter(topic), joinKeyCodec[K]{ks: ks}, joinValueCodec[V]{vs: vs})
	}
	if !validTopic.MatchString(name) || len(name) > 200 {
		b.errorf("store name %q: use 1 to 200 of [a-zA-Z0-9._-] (it names the changelog topic)", name)
	}
	b.stores = append(b.stores, s)
	return joinBuffer[K, V]{s: s}
}

// joinKey is a buffered record's key: the record key, its timestamp
// (millisecond precision) and a sequence number that tells records of one
// key and timestamp apart.
type joinKey[K any] struct {
	key K
	ts  time.Time
	seq uint32
}

// joinKeyCodec encodes a joinKey as the length of the key's encoding (4
// bytes), the encoding, the timestamp in milliseconds (8 bytes, in byte
// order) and the sequence number (4 bytes). The length first makes the
// encoding prefix-free: a range from (k, t1) to (k, t2) holds k's records
// between t1 and t2 and no other key's.
type joinKeyCodec[K any] struct{ ks serde.Serde[K] }

func (c joinKeyCodec[K]) Encode(k joinKey[K]) ([]byte, error) {
	kb, err := c.ks.Encode(k.key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 16+len(kb))
	out = binary.BigEndian.AppendUint32(out, uint32(len(kb)))
	out = append(out, kb...)
	out = binary.BigEndian.AppendUint64(out, uint64(k.ts.UnixMilli())^1<<63)
	return binary.BigEndian.AppendUint32(out, k.seq), nil
}

func (c joinKeyCodec[K]) Decode(b []byte) (joinKey[K], error) {
	var k joinKey[K]
	if len(b) < 16 {
		return k, errors.New("stream: join buffer key shorter than its framing")
	}
	n := int(binary.BigEndian.Uint32(b))
	if len(b) != 16+n {
		return k, fmt.Errorf("stream: join buffer key of %d bytes, framing says %d", len(b), 16+n)
	}
	key, err := c.ks.Decode(b[4 : 4+n])
	if err != nil {
		return k, fmt.Errorf("stream: join buffer key: %w", err)
	}
	ms := int64(binary.BigEndian.Uint64(b[4+n:]) ^ 1<<63)
	return joinKey[K]{key: key, ts: time.UnixMilli(ms).UTC(), seq: binary.BigEndian.Uint32(b[12+n:])}, nil
}

// joinValue is a buffered record's value and whether a record of the
// other side has matched it.
type joinValue[V any] struct {
	matched bool
	value   V
}

// joinValueCodec encodes a joinValue as one byte (1: matched) and the
// value's encoding.
type joinValueCodec[V any] struct{ vs serde.Serde[V] }

func (c joinValueCodec[V]) Encode(v joinValue[V]) ([]byte, error) {
	vb, err := c.vs.Encode(v.value)
	if err != nil {
		return nil, err
	}
	flag := byte(0)
	if v.matched {
		flag = 1
	}
	return append([]byte{flag}, vb...), nil
}

func (c joinValueCodec[V]) Decode(b []byte) (joinValue[V], error) {
	if len(b) < 1 {
		return joinValue[V]{}, errors.New("stream: join buffer value has no match flag")
	}
	v, err := c.vs.Decode(b[1:])
	if err != nil {
		return joinValue[V]{}, err
	}
	return joinValue[V]{matched: b[0] == 1, value: v}, nil
}
