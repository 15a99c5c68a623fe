package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// demoDedup runs the dedup app like demoPassthrough: n events, one worker
// SIGKILLed and restarted halfway. Every 10th event repeats the event_id
// of one five events earlier (under another key: a duplicate the app must
// drop), every 97th is malformed and must land in the DLQ. Every event
// carries a unique "seq"; the check is that each event_id comes out
// exactly once.
func demoDedup(ctx context.Context, stdout, stderr io.Writer, n int64, nworkers int) error {
	rig, err := startDemo(ctx, newDemoProgress(stderr, "dedup", "events", n), []string{"events", "events-unique"}, 8, nworkers, "dedup")
	if err != nil {
		return err
	}
	defer rig.close()
	brokers, ws := rig.brokers, rig.ws
	start := time.Now()
	if err := rig.feed(ctx, n, func(from, to int64) error { return produceEvents(ctx, rig.cl, rig.progress, from, to) }); err != nil {
		return err
	}

	ids := map[int64]bool{}
	var malformed, repeats int64
	for seq := range n {
		switch id := eventID(seq); {
		case isMalformed(seq):
			malformed++
		case ids[id]:
			repeats++
		default:
			ids[id] = true
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rig.progress.say("reading events-unique and the DLQ with read_committed to verify them")
	out, wrong, err := readSeqs(vctx, brokers, "events-unique", int64(len(ids)), func(r *kgo.Record) (int64, bool) {
		var e struct {
			ID  string `json:"event_id"`
			Seq int64  `json:"seq"`
		}
		if json.Unmarshal(r.Value, &e) != nil {
			return -1, false
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(e.ID, "e"), 10, 64)
		return id, err == nil && id == eventID(e.Seq) && string(r.Key) == fmt.Sprintf("x%d", e.Seq)
	})
	if err != nil {
		return err
	}
	dlq, err := readDLQ(vctx, brokers, "dedup", malformed)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := ws.failed(); err != nil {
		return err
	}
	rig.progress.finish()
	var dups, missing, extra, dlqWrong int64
	for id := range ids {
		switch c := out[id]; {
		case c == 0:
			missing++
		case c > 1:
			dups += int64(c - 1)
		}
	}
	for id := range out {
		if !ids[id] {
			extra++
		}
	}
	for seq := range n {
		if isMalformed(seq) && dlq[seq] != 1 {
			dlqWrong++
		}
	}
	fmt.Fprintf(stdout, `demo report (dedup, %d workers, 1 SIGKILL + restart)
  events in:        %d (%d repeat an earlier event_id; %d malformed)
  distinct ids:     %d
  unique out:       %d
  duplicates:       %d
  missing:          %d
  unexpected:       %d (ids that were never sent, or records not as sent)
  DLQ'd:            %d (%d not as expected)
  throughput:       %.0f events/s end to end (%.1fs)
`, nworkers, n, repeats, malformed, len(ids), countAll(out), dups, missing, extra+wrong, countAll(dlq), dlqWrong, float64(n)/elapsed.Seconds(), elapsed.Seconds())
	if dups+missing+extra+wrong+dlqWrong > 0 {
		return fmt.Errorf("runner: demo: dedup output is not exactly once per event_id")
	}
	fmt.Fprintln(stdout, "demo: clean: every event_id exactly once, no repeat; every malformed event in the DLQ")
	return nil
}

// eventID returns the event_id number of event seq: its own, or, for every
// 10th event, that of the event five before it.
func eventID(seq int64) int64 {
	if seq%10 == 9 {
		return seq - 5
	}
	return seq
}

// produceEvents writes events [from, to), keyed x<seq>; p counts what the
// broker acknowledged.
func produceEvents(ctx context.Context, cl *kgo.Client, p *demoProgress, from, to int64) error {
	var firstErr error
	errs := make(chan error, 1)
	for seq := from; seq < to; seq++ {
		v := fmt.Appendf(nil, `{"event_id":"e%d","seq":%d}`, eventID(seq), seq)
		if isMalformed(seq) {
			v = fmt.Appendf(nil, `{"event_id":"e%d", broken seq=%d`, eventID(seq), seq)
		}
		cl.Produce(ctx, &kgo.Record{Topic: "events", Key: fmt.Appendf(nil, "x%d", seq), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			p.acked()
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case firstErr = <-errs:
	default:
	}
	return firstErr
}
