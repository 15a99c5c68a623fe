package main

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lagLeft says what a's group has not consumed yet, "" when it has
// consumed everything.
//
// The group's lag on a topic written with transactions (a repartition
// topic) stays at 1 when it is all consumed: the offset committed is the
// last record's plus one, where the transaction's commit marker is, and
// the end is past the marker. So a partition with lag counts as consumed
// when it has no open transaction and holds nothing but markers (and
// aborted records) between the commit and the end.
func lagLeft(ctx context.Context, brokers []string, adm *kadm.Client, a app) string {
	lags, err := adm.Lag(ctx, a.name())
	if err != nil {
		return err.Error()
	}
	gl, ok := lags[a.name()]
	if !ok || gl.Error() != nil {
		return fmt.Sprintf("group not described: %v", gl.Error())
	}
	ends, err := adm.ListEndOffsets(ctx, inputTopics(a)...)
	if err != nil {
		return err.Error()
	}
	var left string
	ends.Each(func(o kadm.ListedOffset) {
		if left != "" || o.Offset == 0 {
			return
		}
		if ml, ok := gl.Lag.Lookup(o.Topic, o.Partition); !ok || ml.Commit.At < o.Offset {
			left = fmt.Sprintf("%s[%d] not committed up to %d", o.Topic, o.Partition, o.Offset)
		}
	})
	if left != "" {
		return left
	}
	for _, l := range gl.Lag.Sorted() {
		if l.Err != nil || l.Lag < 0 {
			return fmt.Sprintf("%s[%d]: %v", l.Topic, l.Partition, l.Err)
		}
		if l.Lag == 0 {
			continue
		}
		stable, err := adm.ListCommittedOffsets(ctx, l.Topic)
		if err != nil {
			return err.Error()
		}
		if lso, ok := stable.Lookup(l.Topic, l.Partition); !ok || lso.Err != nil || lso.Offset < l.End.Offset {
			return fmt.Sprintf("%s[%d]: a transaction is open", l.Topic, l.Partition)
		}
		only, err := onlyMarkers(ctx, brokers, l.Topic, l.Partition, l.Commit.At, l.End.Offset)
		if err != nil {
			return err.Error()
		}
		if !only {
			return fmt.Sprintf("%s[%d] lag %d", l.Topic, l.Partition, l.Lag)
		}
	}
	return ""
}

// onlyMarkers reports whether partition p of topic holds nothing
// that a read_committed reader is given but transaction markers in
// [from, to).
func onlyMarkers(ctx context.Context, brokers []string, topic string, p int32, from, to int64) (bool, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return false, err
	}
	defer cl.Close()
	for {
		f := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return false, err
		}
		only, reached := true, false
		f.EachRecord(func(r *kgo.Record) {
			if r.Offset >= to {
				return
			}
			if !r.Attrs.IsControl() {
				only = false
			}
			reached = reached || r.Offset+1 >= to
		})
		if !only || reached {
			return only, nil
		}
	}
}
