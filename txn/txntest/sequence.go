package txntest

import (
	"context"
	"fmt"
	"strconv"
	"time"

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

// Verify reads topic from the start with read_committed until it has seen
// every sequence number in [0, n) or ctx is done, then until the topic is
// quiet for a second (so duplicates committed later are counted too), and
// reports. A read_committed reader cannot read past an open
// transaction, so a transaction that never resolves shows up as missing.
func Verify(ctx context.Context, brokers []string, topic string, n int64) (Report, error) {
	seen := make([]uint8, n)
	var rep Report
	err := ReadCommitted(ctx, brokers, topic, func(r *kgo.Record) {
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

// ReadCommitted reads topic from the start with read_committed, calling fn
// for every record, until done reports true and then a whole second passes
// with nothing new (so that records committed late, duplicates among them,
// are seen too), or until ctx ends.
func ReadCommitted(ctx context.Context, brokers []string, topic string, fn func(*kgo.Record), done func() bool) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	for ctx.Err() == nil {
		got := 0
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		for pctx.Err() == nil {
			f := cl.PollFetches(pctx)
			got += f.NumRecords()
			f.EachRecord(fn)
		}
		cancel()
		if got == 0 && done() {
			break
		}
	}
	return nil
}
