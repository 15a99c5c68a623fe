package txntest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// seqDigits is the width of the sequence number that starts every value.
const seqDigits = 12

// SeqValue returns the value of sequence number seq: the number in
// decimal, zero-padded, then filler up to size bytes.
func SeqValue(seq int64, size int) []byte {
	v := make([]byte, max(size, seqDigits))
	copy(v, fmt.Sprintf("%0*d", seqDigits, seq))
	for i := seqDigits; i < len(v); i++ {
		v[i] = 'x'
	}
	return v
}

// ParseSeq returns the sequence number a SeqValue starts with.
func ParseSeq(v []byte) (int64, error) {
	if len(v) < seqDigits {
		return 0, fmt.Errorf("txntest: value %q is not a sequence value", v)
	}
	return strconv.ParseInt(string(v[:seqDigits]), 10, 64)
}

// Produce writes sequence numbers [from, to) to topic with keys
// "k<seq mod keys>" and values SeqValue(seq, size), and waits until all
// are acknowledged. keys 0 means one key per record.
func Produce(ctx context.Context, brokers []string, topic string, from, to int64, keys int64, size int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	var firstErr error
	errc := make(chan error, 1)
	for seq := from; seq < to; seq++ {
		k := seq
		if keys > 0 {
			k = seq % keys
		}
		r := &kgo.Record{Key: []byte("k" + strconv.FormatInt(k, 10)), Value: SeqValue(seq, size)}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case firstErr = <-errc:
	default:
	}
	return firstErr
}

// Report is what Verify found in an output topic.
type Report struct {
	Records    int64   // records read
	Distinct   int64   // distinct sequence numbers among them
	Duplicates int64   // records whose sequence number was seen before
	Missing    []int64 // expected sequence numbers never seen (first 20)
	NumMissing int64
	Foreign    int64 // records that are not sequence values
}

// Clean reports whether every expected number was seen exactly once.
func (r Report) Clean() bool {
	return r.Duplicates == 0 && r.NumMissing == 0 && r.Foreign == 0
}

func (r Report) String() string {
	return fmt.Sprintf("records=%d distinct=%d duplicates=%d missing=%d %v foreign=%d",
		r.Records, r.Distinct, r.Duplicates, r.NumMissing, r.Missing, r.Foreign)
}

// Limits are a read_committed reader's fetch limits: the most bytes a
// fetch response may hold, and the most per partition. A broker returns at
// least one batch per partition whatever the limits.
type Limits struct {
	MaxBytes, PartitionMaxBytes int32
}

func (l Limits) String() string {
	return fmt.Sprintf("%d-byte fetches (%d per partition)", l.MaxBytes, l.PartitionMaxBytes)
}

var (
	// LargeFetches are franz-go's default limits (50 MiB, 1 MiB per
	// partition), which a worker's limits fit within.
	LargeFetches = Limits{50 << 20, 1 << 20}
	// SmallFetches take one batch per partition per response, so every
	// response is cut, per request and per partition, wherever a broker
	// can cut it: one that drops a partition's aborted transactions from a
	// cut response, or loses its place, is caught.
	SmallFetches = Limits{1, 1}
	// Readers are the limits Verify and ReadTable read with: each reads
	// the topic with both, at once, and requires the same result.
	Readers = []Limits{LargeFetches, SmallFetches}
)

// Verify reads topic from the start with read_committed (ReadCommittedWith)
// up to its read_committed end and until it has seen every sequence number
// in [0, n) or ctx is done, then until the topic is quiet for a second (so
// duplicates committed later are counted too), and reports. A
// read_committed reader cannot read past an open transaction, so a
// transaction that never resolves shows up as missing. It reads with each
// of Readers at once and returns an error, naming both reports, when they
// differ, or when one could not read up to the read_committed end before
// ctx ended.
func Verify(ctx context.Context, brokers []string, topic string, n int64) (Report, error) {
	reps, err := ReadEach(func(lim Limits) (Report, error) { return verify(ctx, brokers, topic, n, lim) },
		func(a, b Report) string {
			if a.String() == b.String() {
				return ""
			}
			return a.String() + " vs " + b.String()
		})
	if err != nil {
		return Report{}, err
	}
	return reps[0], nil
}

func verify(ctx context.Context, brokers []string, topic string, n int64, lim Limits) (Report, error) {
	seen := make([]uint8, n)
	var rep Report
	err := ReadCommittedWith(ctx, brokers, topic, lim, func(r *kgo.Record) {
		rep.Records++
		seq, err := ParseSeq(r.Value)
		if err != nil || seq < 0 || seq >= n {
			rep.Foreign++
			return
		}
		if seen[seq] > 0 {
			rep.Duplicates++
		} else {
			rep.Distinct++
		}
		seen[seq]++
	}, func() bool { return rep.Distinct >= n })
	if err != nil {
		return Report{}, err
	}
	for seq, c := range seen {
		if c == 0 {
			rep.NumMissing++
			if len(rep.Missing) < 20 {
				rep.Missing = append(rep.Missing, int64(seq))
			}
		}
	}
	return rep, nil
}

// ReadEach runs read with each of Readers at once and returns their
// results, in the order of Readers, or an error when one failed or when
// diff, given the first result and another, describes a difference (""
// means none).
func ReadEach[T any](read func(Limits) (T, error), diff func(a, b T) string) ([]T, error) {
	out := make([]T, len(Readers))
	errs := make([]error, len(Readers))
	var wg sync.WaitGroup
	for i, lim := range Readers {
		wg.Go(func() { out[i], errs[i] = read(lim) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i := 1; i < len(out); i++ {
		if d := diff(out[0], out[i]); d != "" {
			return nil, fmt.Errorf("txntest: read_committed readers disagree, with %v and with %v: %s", Readers[0], Readers[i], d)
		}
	}
	return out, nil
}

// DiffMaps describes how b differs from a: up to 5 keys whose values
// differ, and how many; "" when they are equal.
func DiffMaps[K cmp.Ordered, V comparable](a, b map[K]V) string {
	var keys []K
	for k, va := range a {
		if vb, ok := b[k]; !ok || va != vb {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d keys differ:", len(keys))
	for _, k := range keys[:min(len(keys), 5)] {
		fmt.Fprintf(&sb, " %v: %v vs %v;", k, show(a, k), show(b, k))
	}
	return sb.String()
}

func show[K comparable, V any](m map[K]V, k K) string {
	if v, ok := m[k]; ok {
		return fmt.Sprint(v)
	}
	return "absent"
}

// ReadCommitted reads topic from the start with read_committed and
// LargeFetches, calling fn for every record (never a transaction marker),
// until it has read up to the topic's read_committed end as listed when it
// starts (each partition's last stable offset, ListOffsets with
// read_committed), done reports true, and then a whole second passes with
// nothing new (so that records committed late, duplicates among them, are
// seen too); or until ctx ends.
//
// It returns an error when ctx ends before every partition is read up to
// that end: what it read then is not all that was committed. A partition
// is read up to its end once a record or transaction marker at the offset
// just before it is; when that offset holds a record of an aborted
// transaction whose marker lies past the end (another producer's
// transaction began in between and is still open), that takes the open
// transaction's end too (at the latest the broker's transaction timeout).
func ReadCommitted(ctx context.Context, brokers []string, topic string, fn func(*kgo.Record), done func() bool) error {
	return ReadCommittedWith(ctx, brokers, topic, LargeFetches, fn, done)
}

// ReadCommittedWith is ReadCommitted with the fetch limits lim.
func ReadCommittedWith(ctx context.Context, brokers []string, topic string, lim Limits, fn func(*kgo.Record), done func() bool) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(lim.MaxBytes), kgo.FetchMaxPartitionBytes(lim.PartitionMaxBytes),
		// Markers are kept so that the read position is known: the last
		// record before the read_committed end may be one.
		kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	left, err := committedEnds(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return err
	}
	reached := map[int32]int64{}
	for ctx.Err() == nil {
		got := 0
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		for pctx.Err() == nil {
			f := cl.PollFetches(pctx)
			got += f.NumRecords()
			f.EachRecord(func(r *kgo.Record) {
				reached[r.Partition] = r.Offset + 1
				if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
					delete(left, r.Partition)
				}
				if !r.Attrs.IsControl() {
					fn(r)
				}
			})
		}
		cancel()
		if len(left) == 0 && got == 0 && done() {
			return nil
		}
	}
	if len(left) > 0 {
		parts := slices.Sorted(maps.Keys(left))
		p := parts[0]
		return fmt.Errorf("txntest: %s: read_committed end not reached in %d partitions (partition %d read up to offset %d of %d): %w",
			topic, len(parts), p, reached[p], left[p], ctx.Err())
	}
	return nil
}

// committedEnds returns the read_committed end (last stable offset) of
// every partition of topic that has records before it. A topic that does
// not exist yet has none.
func committedEnds(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("txntest: %s: list read_committed ends: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("txntest: %s: list start offsets: %w", topic, err)
	}
	left := map[int32]int64{}
	for p, end := range ends[topic] {
		if errors.Is(end.Err, kerr.UnknownTopicOrPartition) {
			continue
		}
		if end.Err != nil {
			return nil, fmt.Errorf("txntest: %s[%d]: list read_committed end: %w", topic, p, end.Err)
		}
		start, ok := starts.Lookup(topic, p)
		if ok && start.Err != nil && !errors.Is(start.Err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("txntest: %s[%d]: list start offset: %w", topic, p, start.Err)
		}
		if !ok || start.Err != nil || start.Offset < end.Offset {
			left[p] = end.Offset
		}
	}
	return left, nil
}
