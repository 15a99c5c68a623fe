package stream_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// counted is a pass-through processor that counts its Init and Close calls
// and can fail its Init.
type counted struct {
	inits, closes *int
	failInit      bool
}

func (c *counted) Init(stream.ProcessorContext) error {
	*c.inits++
	if c.failInit {
		return errors.New("no connection")
	}
	return nil
}

func (c *counted) Close() error {
	*c.closes++
	return nil
}

func (c *counted) Process(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
	return out.Emit(r)
}

func TestProcessInitErrorFailsTask(t *testing.T) {
	var inits, closes, failedInits, failedCloses int
	b := stream.NewBuilder("proc")
	fromIn(b).
		Process(func() *counted { return &counted{inits: &failedInits, closes: &failedCloses, failInit: true} }, stream.Named("connect")).
		Process(func() *counted { return &counted{inits: &inits, closes: &closes} }, stream.Named("downstream")).
		To("out", serde.String, serde.String)
	_, d := newDriver(t, b)
	require.Equal(t, []int{1, 1}, []int{failedInits, inits}, "Build probes each processor's Init once")
	require.Equal(t, []int{1, 1}, []int{failedCloses, closes}, "and closes it")
	inits, closes, failedInits, failedCloses = 0, 0, 0, 0

	err := pipeErr(d, rec("a", "v", 1))
	var ne *stream.NodeError
	require.ErrorAs(t, err, &ne)
	require.Equal(t, "connect", ne.Node)
	require.ErrorContains(t, err, "no connection")
	require.Equal(t, 1, failedInits)
	require.Equal(t, inits, closes, "processors initialized before the failing Init are closed")
	require.Zero(t, streamtest.Output(d, "out", serde.String, serde.String).Len())
	require.Zero(t, d.DLQ().Len(), "a task that cannot start is not a record error")
}

type failingClose struct{ name string }

func (f failingClose) Close() error { return errors.New(f.name + " close failed") }

func (failingClose) Process(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
	return out.Emit(r)
}

func TestProcessCloseErrorsAreJoined(t *testing.T) {
	b := stream.NewBuilder("proc")
	fromIn(b).
		Process(func() failingClose { return failingClose{"first"} }).
		Process(func() failingClose { return failingClose{"second"} }).
		To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	pipe(t, d, rec("a", "v", 1))
	require.Equal(t, strs{o("a", "v", at(1))}, readStrings(t, d, "out"))
	err = d.Close()
	require.ErrorContains(t, err, "first close failed")
	require.ErrorContains(t, err, "second close failed")
}

// tally counts records per processor instance: state is per task.
type tally struct{ n int64 }

func (p *tally) Process(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
	p.n++
	return out.Emit(r.WithValue(fmt.Sprintf("p%d n%d st%d", ctx.Partition(), p.n, ctx.StreamTime().Unix()-epoch.Unix())))
}

func TestProcessorStateAndStreamTimeArePerTask(t *testing.T) {
	b := stream.NewBuilder("proc")
	fromIn(b).Process(func() *tally { return &tally{} }).To("out", serde.String, serde.String)
	_, d := newDriver(t, b, streamtest.WithPartitions("in", 2))

	// Find one key per partition.
	keyOf := map[int32]string{}
	for i := 0; len(keyOf) < 2; i++ {
		k := "k" + strconv.Itoa(i)
		if _, ok := keyOf[kafkaPartition("in", k, 2)]; !ok {
			keyOf[kafkaPartition("in", k, 2)] = k
		}
	}
	k0, k1 := keyOf[0], keyOf[1]
	pipe(t, d, rec(k0, "", 100), rec(k1, "", 5), rec(k0, "", 50), rec(k1, "", 7))
	require.Equal(t, strs{
		o(k0, "p0 n1 st100", at(100)),
		o(k1, "p1 n1 st5", at(5)),
		o(k0, "p0 n2 st100", at(50)),
		o(k1, "p1 n2 st7", at(7)),
	}, readStrings(t, d, "out"))
}

// A processor that passes on (even wrapped) a downstream error gets the
// downstream node named in the error, not itself.
func TestProcessorPassesOnDownstreamError(t *testing.T) {
	tests := []struct {
		name   string
		handle func(err error) error
	}{
		{"returned as is", func(err error) error { return err }},
		{"wrapped", func(err error) error { return fmt.Errorf("forwarding: %w", err) }},
		{"replaced", func(error) error { return errors.New("something else") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var emitErr error
			b := stream.NewBuilder("proc")
			fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, int64] {
				return func(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, int64]) error {
					n, _ := strconv.ParseInt(r.Value(), 10, 64)
					if emitErr = out.Emit(r.WithValue(n)); emitErr != nil {
						return tt.handle(emitErr)
					}
					return nil
				}
			}, stream.Named("parse")).To("out", serde.String, serde.Func("positive",
				func(v int64) ([]byte, error) {
					if v <= 0 {
						return nil, errors.New("not positive")
					}
					return serde.Int64.Encode(v)
				}, serde.Int64.Decode), stream.Named("write"))
			_, d := newDriver(t, b)
			pipe(t, d, rec("a", "0", 1))

			var ne *stream.NodeError
			require.ErrorAs(t, emitErr, &ne, "Emit returns the downstream node's error")
			require.Equal(t, "write", ne.Node)
			dlq, err := d.DLQ().ReadAll()
			require.NoError(t, err)
			require.Len(t, dlq, 1)
			msg := dlq[0].Header(stream.HeaderError)
			require.Contains(t, msg, "node write")
			require.Contains(t, msg, "not positive")
			require.NotContains(t, msg, "parse", "the first downstream error wins")
		})
	}
}

// kafkaRecord is an input as the runtime hands it to a task.
func kafkaRecord(topic string, partition int32, offset int64, key, value string, ts time.Time, headers ...kgo.RecordHeader) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Key: []byte(key), Value: []byte(value), Timestamp: ts, Headers: headers}
}

func newTask(t *testing.T, b *stream.Builder, id topology.TaskID, cfg topology.TaskConfig) topology.Task {
	t.Helper()
	topo, err := b.Build()
	require.NoError(t, err)
	tk, err := topo.NewTask(id, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tk.Close()) })
	return tk
}

func TestTaskProcessAppendsToOut(t *testing.T) {
	b := stream.NewBuilder("app")
	fromIn(b).Process(failOn, stream.Named("checker")).MapValues(strings.ToUpper).To("out", serde.String, serde.String)
	tk := newTask(t, b, topology.TaskID{Partition: 3}, topology.TaskConfig{})

	prefix := &kgo.Record{Topic: "earlier"}
	h := kgo.RecordHeader{Key: "trace", Value: []byte("t-1")}
	out, err := tk.Process(kafkaRecord("in", 3, 7, "k", "v", at(1), h), []*kgo.Record{prefix})
	require.NoError(t, err)
	require.Len(t, out, 2)
	require.Same(t, prefix, out[0], "records already in out are kept")
	require.Equal(t, "out", out[1].Topic)
	require.Equal(t, "k", string(out[1].Key))
	require.Equal(t, "V", string(out[1].Value))
	require.Equal(t, at(1), out[1].Timestamp)
	require.Equal(t, []kgo.RecordHeader{h}, out[1].Headers)

	out, err = tk.Process(kafkaRecord("in", 3, 8, "k", "fail", at(2), h), out)
	require.NoError(t, err)
	require.Len(t, out, 3)
	require.Same(t, prefix, out[0])
	require.Equal(t, "V", string(out[1].Value), "earlier records' outputs are kept")
	dlq := out[2]
	require.Equal(t, "app-dlq", dlq.Topic)
	require.Equal(t, "k", string(dlq.Key))
	require.Equal(t, "fail", string(dlq.Value))
	require.Equal(t, at(2), dlq.Timestamp)
	got := map[string]string{}
	for _, hh := range dlq.Headers {
		got[hh.Key] = string(hh.Value)
	}
	require.Equal(t, "t-1", got["trace"])
	require.Equal(t, "in", got[stream.HeaderTopic])
	require.Equal(t, "3", got[stream.HeaderPartition])
	require.Equal(t, "8", got[stream.HeaderOffset])
	require.Contains(t, got[stream.HeaderError], "checker")
	require.Equal(t, topology.TaskStats{Processed: 2, DeadLetter: 1}, tk.Stats())
}

func TestTaskRejectsForeignTopic(t *testing.T) {
	b := stream.NewBuilder("app")
	toOut(fromIn(b))
	stream.From(b, "other", serde.String, serde.String).To("out2", serde.String, serde.String)
	tk := newTask(t, b, topology.TaskID{Subtopology: 0}, topology.TaskConfig{})

	for _, topic := range []string{"nope", "other"} {
		_, err := tk.Process(kafkaRecord(topic, 0, 9, "k", "v", at(1)), nil)
		var re *stream.RecordError
		require.ErrorAs(t, err, &re, topic)
		require.Equal(t, stream.Origin{Topic: topic, Partition: 0, Offset: 9}, re.Origin)
		require.ErrorContains(t, err, "topic is not a source of this task")
		require.ErrorContains(t, err, topic+"[0]@9")
	}
}

func TestTaskClosed(t *testing.T) {
	var inits, closes int
	b := stream.NewBuilder("app")
	fromIn(b).Process(func() *counted { return &counted{inits: &inits, closes: &closes} }).To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	require.Equal(t, []int{1, 1}, []int{inits, closes}, "Build probes the processor's Init once, and closes it")
	inits, closes = 0, 0
	tk, err := topo.NewTask(topology.TaskID{}, topology.TaskConfig{})
	require.NoError(t, err)
	require.Equal(t, 1, inits, "NewTask calls Init")

	require.NoError(t, tk.Close())
	require.Equal(t, 1, closes)
	require.NoError(t, tk.Close(), "Close is idempotent")
	require.Equal(t, 1, closes)

	_, err = tk.Process(kafkaRecord("in", 0, 0, "k", "v", at(1)), nil)
	require.ErrorContains(t, err, "task is closed")
}

func TestTaskClock(t *testing.T) {
	b := stream.NewBuilder("app")
	fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
		return func(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
			return out.Emit(r.WithValue(ctx.Now().Format(time.RFC3339Nano)))
		}
	}).To("out", serde.String, serde.String)

	t.Run("injected", func(t *testing.T) {
		now := at(1000)
		tk := newTask(t, b, topology.TaskID{}, topology.TaskConfig{Clock: func() time.Time { return now }})
		out, err := tk.Process(kafkaRecord("in", 0, 0, "k", "v", at(1)), nil)
		require.NoError(t, err)
		require.Equal(t, now.Format(time.RFC3339Nano), string(out[0].Value))
		now = now.Add(time.Minute)
		out, err = tk.Process(kafkaRecord("in", 0, 1, "k", "v", at(1)), nil)
		require.NoError(t, err)
		require.Equal(t, now.Format(time.RFC3339Nano), string(out[0].Value))
	})
	t.Run("nil means the wall clock", func(t *testing.T) {
		b := stream.NewBuilder("app")
		fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
			return func(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
				return out.Emit(r.WithValue(ctx.Now().Format(time.RFC3339Nano)))
			}
		}).To("out", serde.String, serde.String)
		tk := newTask(t, b, topology.TaskID{}, topology.TaskConfig{})
		before := time.Now()
		out, err := tk.Process(kafkaRecord("in", 0, 0, "k", "v", at(1)), nil)
		after := time.Now()
		require.NoError(t, err)
		got, err := time.Parse(time.RFC3339Nano, string(out[0].Value))
		require.NoError(t, err)
		require.False(t, got.Before(before.Truncate(time.Second)) || got.After(after.Add(time.Second)), "%v not in [%v, %v]", got, before, after)
	})
}

// A Topology is safe for concurrent use: runtimes create and run tasks of
// one topology on several goroutines. Run with -race.
func TestTasksOfOneTopologyRunConcurrently(t *testing.T) {
	b := stream.NewBuilder("app")
	br := fromIn(b).
		Merge(stream.From(b, "in2", serde.String, serde.String)).
		Process(func() *tally { return &tally{} }).
		Split([]stream.Branch[string, string]{{Name: "a", Pred: func(k, _ string) bool { return k == "a" }}, {Name: "rest"}})
	br[0].MapValues(strings.ToUpper).To("out", serde.String, serde.String)
	br[1].To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)

	const tasks, records = 4, 200
	errs := make(chan error, tasks)
	for p := range tasks {
		go func() {
			errs <- func() error {
				tk, err := topo.NewTask(topology.TaskID{Partition: int32(p)}, topology.TaskConfig{})
				if err != nil {
					return err
				}
				var out []*kgo.Record
				for i := range records {
					topic := []string{"in", "in2"}[i%2]
					key := []string{"a", "b"}[i%2]
					if out, err = tk.Process(kafkaRecord(topic, int32(p), int64(i/2), key, "v", at(i)), out[:0]); err != nil {
						return err
					}
					want := fmt.Sprintf("p%d n%d st%d", p, i+1, i)
					if key == "a" {
						want = strings.ToUpper(want)
					}
					if len(out) != 1 {
						return fmt.Errorf("task %d record %d: got %d outputs, want 1", p, i, len(out))
					}
					if got := string(out[0].Value); got != want {
						return fmt.Errorf("task %d record %d: got %q, want %q", p, i, got, want)
					}
				}
				return tk.Close()
			}()
		}()
	}
	for range tasks {
		require.NoError(t, <-errs)
	}
}

// A processor's tombstone reaches the sink's topic as a null value, read
// back as Deleted; a piped tombstone arrives as a null value too.
func TestTombstoneIsWrittenAsNullValue(t *testing.T) {
	b := stream.NewBuilder("tomb")
	fromIn(b).
		Process(func() stream.ProcessorFunc[string, string, string, string] {
			return func(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
				if r.Value() == "" {
					return out.Emit(stream.Tombstone[string, string](r.Key(), r.Timestamp()))
				}
				return out.Emit(r)
			}
		}, stream.Named("deleter")).
		To("out", serde.String, serde.String)
	_, d := newDriver(t, b)
	pipe(t, d, rec("a", "v", 1), rec("a", "", 2))
	got, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.False(t, got[0].Deleted)
	require.Equal(t, "v", got[0].Value)
	require.True(t, got[1].Deleted, "a tombstone is a null value")
	require.Equal(t, "a", got[1].Key)
	require.True(t, stream.Tombstone[string, int]("k", at(1)).Deleted())
	require.False(t, stream.Tombstone[string, int]("k", at(1)).WithValue(3).Deleted(), "a record given a value is no tombstone")
}
