package stream

import (
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Dedup drops every record whose id, id(key, value), was already seen
// within span of event time (the record's timestamp): the first record of
// an id passes, its repeats within span of it are dropped and counted
// (TaskStats.Duplicates, the runtime's sluice_duplicates_dropped_total).
// The name (required) is its store's, changelogged to
// `<app-id>-<name>-changelog`.
//
// Records with the same id must reach the same task: the stream's key
// must determine the id (DedupByKey), or the stream must be partitioned
// by the id (Repartition after SelectKey). Dedup cannot check that.
//
// State is bounded by stream time, not by the wall clock (DESIGN.md
// invariant 7): an id seen at t is forgotten once stream time passes
// t+span, and a tombstone goes to the changelog. A record older than
// stream time minus span can no longer be checked: it passes and is
// counted (TaskStats.Unchecked, sluice_dedup_unchecked_total). Stream
// time is the largest timestamp the task has seen, so the ids kept are
// those of about one span of event time.
func (s Stream[K, V]) Dedup[ID any](name string, id func(K, V) ID, idSerde serde.Serde[ID], span time.Duration) Stream[K, V] {
	if id == nil {
		s.b.errorf("Dedup: id is nil")
	}
	return dedup(s, id, idSerde, span, "dedup", named(name))
}

// DedupByKey is Dedup with the record's key as its id.
func (s Stream[K, V]) DedupByKey(name string, keySerde serde.Serde[K], span time.Duration) Stream[K, V] {
	return dedup(s, func(k K, _ V) K { return k }, keySerde, span, "dedupbykey", named(name))
}

const (
	// dedupSegments is how many segments of expiry time a span holds
	// (see state.Segmented): an expiry pass drops the ids of one
	// segment, and a lookup probes the key filter of each segment.
	dedupSegments = 10
	// A pass removes at most dedupPassChunk ids every dedupPassEvery
	// records: ids leave twice as fast as one new id a record arrives,
	// and no transaction holds a whole segment's removals (the peak of
	// the state's memory).
	dedupPassChunk = 2000
	dedupPassEvery = 1000
)

func dedup[K, V, ID any](s Stream[K, V], id func(K, V) ID, idSerde serde.Serde[ID], span time.Duration, op string, opts []nodeOption) Stream[K, V] {
	b := s.b
	o := b.stateful(op, "its store and changelog", opts)
	if span <= 0 || span%time.Millisecond != 0 {
		b.errorf("%s %s: span %v must be a positive whole number of milliseconds (Kafka timestamps are milliseconds)", op, o.name, span)
	}
	if idSerde == nil {
		b.errorf("%s %s: the id serde is nil", op, o.name)
	}
	segment := max(span/dedupSegments, time.Millisecond)
	store := newSegmentedStore(b, o.name, idSerde, segment)
	return then(s, op, append(opts, WithStores(store)), func(t *task, next sink[K, V]) (sink[K, V], error) {
		ids := t.stores[store.s].(*state.Segmented[ID, []byte])
		d := &dedupNode[K, V, ID]{t: t, ids: ids, id: id, span: span, segment: segment, next: next}
		return d, nil
	})
}

type dedupNode[K, V, ID any] struct {
	t             *task
	ids           *state.Segmented[ID, []byte]
	id            func(K, V) ID
	span, segment time.Duration
	next          sink[K, V]
	// passed is the segment of stream time (its number since the epoch)
	// at which the last expiry pass began; a pass drops the segments of
	// ids that expire before the one stream time is in, dedupPassChunk
	// ids at a time while more is set, every dedupPassEvery records
	// (wait counts them down). Only hints: a pass that a discard undid
	// goes on at the next segment, and what is a duplicate never depends
	// on when passes run.
	passed int64
	more   bool
	wait   int
}

func (d *dedupNode[K, V, ID]) push(r Record[K, V]) error {
	t := d.t
	horizon := t.streamTime.Add(-d.span) // ids seen before it are forgotten
	if r.ts.Before(horizon) {
		t.stats.Unchecked++
		return d.next.push(r)
	}
	if err := d.expire(); err != nil {
		return err
	}
	id := d.id(r.key, r.value)
	_, expires, seen, err := d.ids.Get(id)
	if err != nil {
		return err
	}
	if seen {
		first := expires.Add(-d.span)
		// An id kept past its span (expiry drops segments) is forgotten
		// all the same: what is a duplicate depends on stream time only.
		if !first.Before(horizon) && absDiff(r.ts, first) <= d.span {
			t.stats.Duplicates++
			return nil
		}
	}
	if err := d.ids.Put(id, nil, r.ts.Add(d.span)); err != nil {
		return err
	}
	return d.next.push(r)
}

// expire drops, a chunk at a time, the segments of ids forgotten by the
// start of the segment that stream time is in: they live a segment past
// their span, and the time the pass takes.
func (d *dedupNode[K, V, ID]) expire() error {
	n := d.t.streamTime.UnixMilli() / d.segment.Milliseconds()
	if n != d.passed {
		d.passed, d.more, d.wait = n, true, 0
	}
	if !d.more {
		return nil
	}
	if d.wait > 0 {
		d.wait--
		return nil
	}
	d.wait = dedupPassEvery - 1
	// An id seen at t expires at t+span: forgotten once stream time is
	// past it.
	more, err := d.ids.ExpireSome(time.UnixMilli(n*d.segment.Milliseconds()-1), dedupPassChunk, nil)
	d.more = more
	return err
}

func absDiff(a, b time.Time) time.Duration {
	if d := a.Sub(b); d >= 0 {
		return d
	}
	return b.Sub(a)
}

// packedHeaders mark the records of a changelog written in packs
// (state.PackedHeader); every record shares them.
var packedHeaders = []kgo.RecordHeader{{Key: state.PackedHeader, Value: []byte("1")}}

// segmentedStore is a declared state.Segmented store of ids with no
// value.
type segmentedStore[ID any] struct{ s *storeSpec }

func (s segmentedStore[ID]) spec() *storeSpec { return s.s }

// newSegmentedStore declares the store of a dedup operator, with
// segments segment wide.
func newSegmentedStore[ID any](b *Builder, name string, idSerde serde.Serde[ID], segment time.Duration) segmentedStore[ID] {
	s := &storeSpec{name: name}
	s.open = func(t *task) (any, error) {
		topic := s.changelogTopic(b.appID)
		w := t.newChangelogWriter(topic)
		w.headers = packedHeaders
		return state.NewSegmented(t.db, name, topic, w, state.Codec[ID](idSerde), state.Codec[[]byte](serde.Bytes), segment)
	}
	if !validTopic.MatchString(name) || len(name) > 200 {
		b.errorf("store name %q: use 1 to 200 of [a-zA-Z0-9._-] (it names the changelog topic)", name)
	}
	b.stores = append(b.stores, s)
	return segmentedStore[ID]{s: s}
}
