package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The passthrough app's topics under chaos.
const (
	passthroughIn  = "pt-in"
	passthroughOut = "pt-out"
)

// passthroughApp is the passthrough example app under chaos: pt-in copied
// to pt-out. Its input is sequence values (txntest.SeqValue), keyed
// k<seq%1000>, every third with a header, every 97th ending in bytes that
// are neither UTF-8 nor JSON: passthrough copies bytes, so those pass
// through too and its DLQ stays empty.
type passthroughApp struct{}

// newPassthrough returns the passthrough app under chaos.
func newPassthrough() *passthroughApp { return &passthroughApp{} }

// name implements app.
func (*passthroughApp) name() string { return "passthrough" }

// topics implements app: pt-in and pt-out, 8 partitions each.
func (*passthroughApp) topics() []topicSpec {
	return []topicSpec{{name: passthroughIn, partitions: 8}, {name: passthroughOut, partitions: 8}}
}

// args implements app.
func (a *passthroughApp) args() []string {
	return []string{a.name(), "--input", passthroughIn, "--output", passthroughOut}
}

// setup implements app: passthrough needs nothing in place.
func (*passthroughApp) setup(context.Context, *kgo.Client) error { return nil }

// record implements app: value SeqValue(seq, 100), key k<seq%1000>;
// every third record carries a header naming its seq (so that the check
// of headers has some to compare), and every 97th value ends in invalid
// UTF-8 and JSON, as cmd/runner's produceDemo writes it. The timestamp is
// left to the producer (the wall clock).
func (*passthroughApp) record(seq int64) *kgo.Record {
	v := txntest.SeqValue(seq, 100)
	if malformedSeq(seq) {
		copy(v[len(v)-6:], "\xff{\x00not")
	}
	r := &kgo.Record{Topic: passthroughIn, Key: fmt.Appendf(nil, "k%d", seq%1000), Value: v}
	if seq%3 == 0 {
		r.Headers = []kgo.RecordHeader{{Key: "chaos-seq", Value: strconv.AppendInt(nil, seq, 10)}}
	}
	return r
}

// finish implements app: nothing to close.
func (*passthroughApp) finish(int64) []*kgo.Record { return nil }

// outputs implements app.
func (a *passthroughApp) outputs() []string {
	return []string{passthroughOut, topology.DLQTopic(a.name())}
}

// verify implements app: every input record read back (by its seq) is in
// pt-out exactly as often as it is in pt-in (once, unless the broker
// wrote it twice), with the same key, value, headers and timestamp;
// pt-out holds nothing else; the DLQ is empty (or was never created).
func (a *passthroughApp) verify(ctx context.Context, brokers []string) (appReport, error) {
	rep := appReport{app: a.name(), counts: map[string]int64{}}
	in, err := readInput(ctx, brokers, passthroughIn)
	if err != nil {
		return rep, err
	}
	rep.input = int64(len(in))
	want := map[int64]int{}
	sent := map[int64]*kgo.Record{}
	for _, r := range in {
		seq, err := txntest.ParseSeq(r.Value)
		if err != nil {
			return rep, fmt.Errorf("chaos: %s[%d]@%d: an input record the feeder did not write: %q", passthroughIn, r.Partition, r.Offset, r.Value)
		}
		want[seq]++
		if sent[seq] == nil {
			sent[seq] = r
		}
	}
	rep.expected = rep.input

	out, err := readOutput(ctx, brokers, passthroughOut)
	if err != nil {
		return rep, err
	}
	rep.counts[passthroughOut] = int64(len(out))
	got := map[int64]int{}
	for _, r := range out {
		seq, err := txntest.ParseSeq(r.Value)
		if err != nil || sent[seq] == nil {
			rep.mismatches++
			rep.note("%s[%d]@%d: a record that is no input: %q", passthroughOut, r.Partition, r.Offset, r.Value)
			continue
		}
		if d := recordDiff(sent[seq], r); d != "" {
			rep.mismatches++
			rep.note("%s[%d]@%d: seq %d is not copied unchanged: %s", passthroughOut, r.Partition, r.Offset, seq, d)
			continue
		}
		got[seq]++
	}
	tally(&rep, passthroughOut, want, got)
	// Nothing is malformed to passthrough: any dead letter is a mismatch.
	if err := checkDLQ(ctx, brokers, &rep, nil); err != nil {
		return rep, err
	}
	return rep, nil
}
