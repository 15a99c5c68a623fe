package txn_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// stampTopology writes its store only for records keyed "write" and
// emits, for every record, the task's stream time when it processed it.
func stampTopology(t *testing.T) topology.Topology {
	b := stream.NewBuilder("stamp")
	seen := stream.NewKeyValueStore(b, "seen", serde.String, serde.Int64)
	stream.From(b, "in", serde.String, serde.String).
		Process(func() stream.ProcessorFunc[string, string, string, int64] {
			return func(ctx stream.ProcessorContext, rec stream.Record[string, string], out stream.Emitter[string, int64]) error {
				if rec.Key() == "write" {
					if err := seen.In(ctx).Put(rec.Value(), rec.Timestamp().UnixMilli()); err != nil {
						return err
					}
				}
				return out.Emit(stream.NewRecord(rec.Value(), ctx.StreamTime().UnixMilli(), rec.Timestamp()))
			}
		}, stream.Named("stamp"), stream.WithStores(seen)).
		To("out", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	return topo
}

// A crash loses the database's unflushed commits, and with them the stream
// time they reached, also when the input that advanced it wrote no state.
// The restart replays the changelog's tail and reads the input from the
// checkpoint's position to the committed offset, so the task's stream time
// is what it was at the committed offset: decisions that depend on it
// (window closes, late drops, dedup eviction) replay identically
// (DESIGN.md invariant 7). Here the crash is the state directory of an
// earlier, flushed checkpoint: what a SIGKILL leaves.
func TestStreamTimeSurvivesCrash(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ms := func(s float64) int64 { return at(s).UnixMilli() }

	for _, tc := range []struct {
		name  string
		crash func(t *testing.T, dir, flushed string)
		late  float64 // the timestamp of the record after the crash
		want  int64   // the stream time it is processed at
	}{
		{
			// The commits of "b" (a write at 2s) and "c" (no write, at 5s)
			// are lost: the changelog tail restores "b", the input "c".
			name: "tail",
			crash: func(t *testing.T, dir, flushed string) {
				require.NoError(t, os.RemoveAll(dir))
				require.NoError(t, os.CopyFS(dir, os.DirFS(flushed)))
			},
			late: 3, want: ms(5),
		},
		{
			// A full restore knows no input position: the stream time is
			// the newest changelog record's, here "b"'s 2s; "c" advanced
			// it without a write and is not read back (docs/state.md).
			name: "wiped",
			crash: func(t *testing.T, dir, _ string) {
				require.NoError(t, os.RemoveAll(dir))
			},
			late: 1.5, want: ms(2),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 1, "in", "out")
			root := t.TempDir()
			ws := c.workers(stampTopology(t), txn.Config{StateDir: root, SessionTimeout: 3 * time.Second})
			dir := filepath.Join(root, "w1")
			out := newStampReader(t, c)
			produce := func(key, value string, ts time.Time) {
				t.Helper()
				cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
				require.NoError(t, err)
				defer cl.Close()
				require.NoError(t, cl.ProduceSync(c.ctx(30*time.Second), &kgo.Record{Topic: "in", Key: []byte(key), Value: []byte(value), Timestamp: ts}).FirstErr())
			}

			ws.start("w1")
			produce("write", "a", at(1))
			require.Equal(t, ms(1), out.wait("a"))
			ws.halt("w1") // flushes a checkpoint: stream time 1s, input 1
			flushed := filepath.Join(t.TempDir(), "flushed")
			require.NoError(t, os.CopyFS(flushed, os.DirFS(dir)))

			ws.start("w1")
			produce("write", "b", at(2))
			produce("read", "c", at(5))
			require.Equal(t, ms(2), out.wait("b"))
			require.Equal(t, ms(5), out.wait("c"))
			ws.halt("w1")
			tc.crash(t, dir, flushed)

			ws.start("w1")
			produce("read", "d", at(tc.late))
			require.Equal(t, tc.want, out.wait("d"))
			ws.stopAll()
			ws.requireNoErrors()
		})
	}
}

// stampReader reads stampTopology's output with read_committed.
type stampReader struct {
	t   *testing.T
	c   *cluster
	cl  *kgo.Client
	got map[string]int64
}

func newStampReader(t *testing.T, c *cluster) *stampReader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics("out"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return &stampReader{t: t, c: c, cl: cl, got: map[string]int64{}}
}

// wait returns the stream time the record with value v was processed at,
// reading until it is committed (a minute at most).
func (r *stampReader) wait(v string) int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if st, ok := r.got[v]; ok {
			return st
		}
		fs := r.cl.PollFetches(ctx)
		require.NoError(r.t, ctx.Err(), "no output for %q", v)
		fs.EachRecord(func(rec *kgo.Record) {
			st, err := serde.Int64.Decode(rec.Value)
			require.NoError(r.t, err)
			_, dup := r.got[string(rec.Key)]
			require.False(r.t, dup, "%q output twice", rec.Key)
			r.got[string(rec.Key)] = st
		})
	}
}
