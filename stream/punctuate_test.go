package stream_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/stretchr/testify/require"
)

// ticker sums its input's values in a store; its punctuator emits the sum
// under the punctuation type's name, at the punctuation's time, and
// resets it. A sum of 13 fails the punctuator after it emitted and wrote;
// an input value of -1 fails Process, one of -100 schedules a second
// punctuator and then fails Process, and one of -7 cancels the punctuator
// and then fails Process.
type ticker struct {
	sums        *stream.KeyValueStore[string, int64]
	typ         stream.PunctuationType
	every       time.Duration
	cancelAfter int // the punctuator cancels itself after this many fires; 0: never
	fires       int
	p           *stream.Punctuation
}

func (k *ticker) Init(ctx stream.ProcessorContext) error {
	var err error
	k.p, err = stream.Schedule(ctx, k.every, k.typ, k.punctuator(ctx))
	return err
}

func (k *ticker) punctuator(ctx stream.ProcessorContext) func(time.Time, stream.Emitter[string, int64]) error {
	return func(now time.Time, out stream.Emitter[string, int64]) error {
		kv := k.sums.In(ctx)
		n, _, err := kv.Get("sum")
		if err != nil {
			return err
		}
		if err := kv.Put("sum", 0); err != nil {
			return err
		}
		if err := out.Emit(stream.NewRecord(k.typ.String(), n, now)); err != nil {
			return err
		}
		if n == 13 {
			return errors.New("unlucky sum")
		}
		if k.fires++; k.fires == k.cancelAfter {
			k.p.Cancel()
		}
		return nil
	}
}

func (k *ticker) Process(ctx stream.ProcessorContext, rec stream.Record[string, int64], _ stream.Emitter[string, int64]) error {
	switch rec.Value() {
	case -1:
		return errors.New("bad record")
	case -100:
		if _, err := stream.Schedule(ctx, k.every, k.typ, k.punctuator(ctx)); err != nil {
			return err
		}
		return errors.New("bad record after a Schedule")
	case -7:
		k.p.Cancel()
		return errors.New("bad record after a Cancel")
	}
	kv := k.sums.In(ctx)
	n, _, err := kv.Get("sum")
	if err != nil {
		return err
	}
	return kv.Put("sum", n+rec.Value())
}

type tickerOpts struct {
	typ         stream.PunctuationType
	every       time.Duration
	cancelAfter int
	policy      stream.ErrorPolicy
}

func tickerTopology(t *testing.T, o tickerOpts) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder("ticks", stream.WithErrorPolicy(o.policy))
	sums := stream.NewKeyValueStore(b, "sums", serde.String, serde.Int64)
	stream.From(b, "in", serde.String, serde.Int64).
		Process(func() *ticker {
			return &ticker{sums: sums, typ: o.typ, every: o.every, cancelAfter: o.cancelAfter}
		}, stream.Named("ticker"), stream.WithStores(sums)).
		To("out", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	return topo
}

// tick is an output of ticker: the sum and the punctuation's time.
type tick struct {
	sum int64
	at  time.Time
}

func readTicks(t *testing.T, d *streamtest.Driver) []tick {
	t.Helper()
	recs, err := streamtest.Output(d, "out", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	var ticks []tick
	for _, r := range recs {
		ticks = append(ticks, tick{r.Value, r.Timestamp})
	}
	return ticks
}

var epoch0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func atSec(s int) time.Time { return epoch0.Add(time.Duration(s) * time.Second) }

// A stream-time punctuator fires after the first record, then after every
// record that moves the stream time into a later 10 s interval of the
// epoch's grid: once per jump, never for an out-of-order record; what it
// emits and writes is in the stream as if that record had.
func TestStreamTimePunctuation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cancelAfter int
		want        []tick
	}{
		{name: "fires", want: []tick{{1, atSec(3)}, {6, atSec(12)}, {56, atSec(47)}, {64, atSec(50)}}},
		{name: "cancelled by itself", cancelAfter: 2, want: []tick{{1, atSec(3)}, {6, atSec(12)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := streamtest.New(tickerTopology(t, tickerOpts{typ: stream.StreamTime, every: 10 * time.Second, cancelAfter: tc.cancelAfter}))
			defer d.Close()
			in := streamtest.Input(d, "in", serde.String, serde.Int64)
			for _, r := range []struct {
				s int
				v int64
			}{{3, 1}, {7, 2}, {12, 4}, {15, 8}, {5, 16}, {47, 32}, {50, 64}} {
				require.NoError(t, in.Pipe("k", r.v, atSec(r.s)))
			}
			// The wall clock moves no stream-time punctuator.
			require.NoError(t, d.AdvanceWallClock(time.Hour))
			require.Equal(t, tc.want, readTicks(t, d))
		})
	}
}

// A wall-clock punctuator fires every interval of the driver's clock, with
// no record arriving, once however far the clock jumps, and its emitted
// records and state writes are committed.
func TestWallClockPunctuation(t *testing.T) {
	d := streamtest.New(tickerTopology(t, tickerOpts{typ: stream.WallClock, every: time.Minute}))
	defer d.Close()
	in := streamtest.Input(d, "in", serde.String, serde.Int64)
	start := d.Now()
	require.NoError(t, d.AdvanceWallClock(time.Hour)) // no task is open yet
	require.Empty(t, readTicks(t, d))

	start = start.Add(time.Hour)
	require.NoError(t, in.Pipe("k", 1, atSec(3))) // opens the task: due in a minute
	require.NoError(t, d.AdvanceWallClock(30*time.Second))
	require.Empty(t, readTicks(t, d))
	require.NoError(t, d.AdvanceWallClock(30*time.Second))
	require.Equal(t, []tick{{1, start.Add(time.Minute)}}, readTicks(t, d))

	require.NoError(t, in.Pipe("k", 2, atSec(4)))
	require.NoError(t, d.AdvanceWallClock(5*time.Minute)) // late: once, then a minute after
	require.Equal(t, []tick{{2, start.Add(6 * time.Minute)}}, readTicks(t, d))
	require.NoError(t, d.AdvanceWallClock(59*time.Second))
	require.Empty(t, readTicks(t, d))
	require.NoError(t, in.Pipe("k", 4, atSec(5)))
	require.NoError(t, d.AdvanceWallClock(time.Second))
	require.Equal(t, []tick{{4, start.Add(7 * time.Minute)}}, readTicks(t, d), "the reset was committed")
}

// A failing punctuator goes through the error policy: what it emitted and
// wrote is undone (the sum it failed to reset comes out with the next
// punctuation), then it goes to the DLQ, named by node and type, is
// skipped and counted, or fails the task.
func TestPunctuationErrorPolicy(t *testing.T) {
	for _, typ := range []stream.PunctuationType{stream.StreamTime, stream.WallClock} {
		punctuate := func(t *testing.T, d *streamtest.Driver, in *streamtest.InputTopic[string, int64], s int) error {
			if typ == stream.StreamTime {
				return in.Pipe("k", 0, atSec(s))
			}
			return d.AdvanceWallClock(10 * time.Second)
		}
		t.Run(typ.String(), func(t *testing.T) {
			t.Run("dlq", func(t *testing.T) {
				d := streamtest.New(tickerTopology(t, tickerOpts{typ: typ, every: 10 * time.Second}))
				defer d.Close()
				in := streamtest.Input(d, "in", serde.String, serde.Int64)
				require.NoError(t, in.Pipe("k", 0, atSec(1)))
				readTicks(t, d)
				require.NoError(t, in.Pipe("k", 13, atSec(2)))
				require.NoError(t, punctuate(t, d, in, 12))
				require.Empty(t, readTicks(t, d), "the failed punctuation's output is dropped")
				dlq, err := d.DLQ().ReadAll()
				require.NoError(t, err)
				require.Len(t, dlq, 1)
				require.Nil(t, dlq[0].Key)
				require.Nil(t, dlq[0].Value)
				require.Equal(t, "ticker", dlq[0].Header(stream.HeaderNode))
				require.Equal(t, typ.String(), dlq[0].Header(stream.HeaderPunctuation))
				require.Equal(t, "0", dlq[0].Header(stream.HeaderPartition))
				require.Contains(t, dlq[0].Header(stream.HeaderError), "unlucky sum")
				require.Equal(t, int64(1), d.Stats().DeadLetter)

				require.NoError(t, in.Pipe("k", 1, atSec(13)))
				require.NoError(t, punctuate(t, d, in, 22))
				require.Equal(t, int64(14), readTicks(t, d)[0].sum, "the failed reset was rolled back")
			})
			t.Run("skip", func(t *testing.T) {
				d := streamtest.New(tickerTopology(t, tickerOpts{typ: typ, every: 10 * time.Second, policy: stream.OnErrorSkip}))
				defer d.Close()
				in := streamtest.Input(d, "in", serde.String, serde.Int64)
				require.NoError(t, in.Pipe("k", 0, atSec(1)))
				readTicks(t, d)
				require.NoError(t, in.Pipe("k", 13, atSec(2)))
				require.NoError(t, punctuate(t, d, in, 12))
				require.Empty(t, readTicks(t, d))
				require.Equal(t, int64(1), d.Stats().Skipped)
				require.Zero(t, d.DLQ().Len())
			})
			t.Run("fail", func(t *testing.T) {
				d := streamtest.New(tickerTopology(t, tickerOpts{typ: typ, every: 10 * time.Second, policy: stream.OnErrorFail}))
				defer d.Close()
				in := streamtest.Input(d, "in", serde.String, serde.Int64)
				require.NoError(t, in.Pipe("k", 0, atSec(1)))
				readTicks(t, d)
				require.NoError(t, in.Pipe("k", 13, atSec(2)))
				err := punctuate(t, d, in, 12)
				var pe *stream.PunctuationError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, "ticker", pe.Node)
				require.Equal(t, typ, pe.Type)
				require.ErrorContains(t, err, "unlucky sum")
				require.Empty(t, readTicks(t, d), "the batch was aborted")
			})
		})
	}
}

// The same input gives the same punctuations whether the task runs
// through, or is stopped and started again on its state, or has batches
// aborted and processed again: stream-time punctuation is a function of
// the input and the committed stream time (DESIGN.md invariant 7).
func TestStreamTimePunctuationReplays(t *testing.T) {
	type rec struct {
		s int
		v int64
	}
	first := []rec{{3, 1}, {7, 2}, {12, 4}}
	second := []rec{{15, 8}, {21, 16}, {18, 32}, {44, 64}}
	opts := tickerOpts{typ: stream.StreamTime, every: 10 * time.Second, policy: stream.OnErrorFail}
	pipe := func(t *testing.T, d *streamtest.Driver, rs []rec) {
		in := streamtest.Input(d, "in", serde.String, serde.Int64)
		for _, r := range rs {
			require.NoError(t, in.Pipe("k", r.v, atSec(r.s)))
		}
	}

	d := streamtest.New(tickerTopology(t, opts))
	pipe(t, d, append(first, second...))
	want := readTicks(t, d)
	require.NoError(t, d.Close())
	require.Equal(t, []tick{{1, atSec(3)}, {6, atSec(12)}, {24, atSec(21)}, {96, atSec(44)}}, want)

	t.Run("restart", func(t *testing.T) {
		dir := t.TempDir()
		d := streamtest.New(tickerTopology(t, opts), streamtest.WithStateDir(dir))
		pipe(t, d, first)
		got := readTicks(t, d)
		require.NoError(t, d.Close())
		d = streamtest.New(tickerTopology(t, opts), streamtest.WithStateDir(dir))
		defer d.Close()
		pipe(t, d, second)
		require.Equal(t, want, append(got, readTicks(t, d)...))
	})
	t.Run("aborted batches", func(t *testing.T) {
		d := streamtest.New(tickerTopology(t, opts))
		defer d.Close()
		in := streamtest.Input(d, "in", serde.String, serde.Int64)
		for _, r := range append(first, second...) {
			// Each record first comes in a batch that aborts after it
			// advanced the stream time (and, for -100, scheduled a second
			// punctuator): its replay must punctuate as if it had not.
			require.Error(t, in.Pipe("k", -1, atSec(r.s)))
			require.Error(t, in.Pipe("k", -100, atSec(r.s)))
			require.NoError(t, in.Pipe("k", r.v, atSec(r.s)))
		}
		require.Equal(t, want, readTicks(t, d))
	})
}

// A record that fails is all or nothing for punctuation too: what it
// scheduled or cancelled is undone with its outputs and state writes,
// although its batch commits.
func TestScheduleUndoneWithFailedRecord(t *testing.T) {
	for _, failing := range []int64{-100, -7} { // a Schedule, a Cancel
		d := streamtest.New(tickerTopology(t, tickerOpts{typ: stream.StreamTime, every: 10 * time.Second}))
		in := streamtest.Input(d, "in", serde.String, serde.Int64)
		require.NoError(t, in.Pipe("k", 1, atSec(3)))
		require.NoError(t, in.Pipe("k", failing, atSec(4))) // to the DLQ
		require.NoError(t, in.Pipe("k", 2, atSec(12)))
		require.Equal(t, 1, d.DLQ().Len())
		require.Equal(t, []tick{{1, atSec(3)}, {2, atSec(12)}}, readTicks(t, d), "%d: one punctuator, not cancelled", failing)
		require.NoError(t, d.Close())
	}
}

// A task without stores has no checkpoint; an aborted batch still takes
// its stream time back, so that the batch's records punctuate again when
// they are processed again.
func TestStreamTimePunctuationStatelessAbort(t *testing.T) {
	b := stream.NewBuilder("stateless", stream.WithErrorPolicy(stream.OnErrorFail))
	stream.From(b, "in", serde.String, serde.Int64).
		Process(func() *stamper { return &stamper{} }, stream.Named("stamper")).
		To("out", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "in", serde.String, serde.Int64)
	require.NoError(t, in.Pipe("k", 0, atSec(3)))
	require.Error(t, in.Pipe("k", -1, atSec(12)))
	require.NoError(t, in.Pipe("k", 0, atSec(12)))
	require.Equal(t, []tick{{0, atSec(3)}, {0, atSec(12)}}, readTicks(t, d))
}

// stamper emits, at every stream-time punctuation, a 0 at its time; an
// input value of -1 fails.
type stamper struct{}

func (stamper) Init(ctx stream.ProcessorContext) error {
	_, err := stream.Schedule(ctx, 10*time.Second, stream.StreamTime, func(now time.Time, out stream.Emitter[string, int64]) error {
		return out.Emit(stream.NewRecord("st", int64(0), now))
	})
	return err
}

func (stamper) Process(_ stream.ProcessorContext, rec stream.Record[string, int64], _ stream.Emitter[string, int64]) error {
	if rec.Value() == -1 {
		return errors.New("bad record")
	}
	return nil
}

// Schedule checks its arguments; a punctuator whose output types are not
// the processor's fails the task's creation, naming the node.
func TestScheduleErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		schedule func(ctx stream.ProcessorContext) error
		want     string
	}{
		{"types", func(ctx stream.ProcessorContext) error {
			_, err := stream.Schedule(ctx, time.Second, stream.StreamTime, func(time.Time, stream.Emitter[string, string]) error { return nil })
			return err
		}, "node bad: Schedule: the punctuator emits Record[string, string], not the processor's output type"},
		{"interval", func(ctx stream.ProcessorContext) error {
			_, err := stream.Schedule(ctx, time.Microsecond, stream.WallClock, func(time.Time, stream.Emitter[string, int64]) error { return nil })
			return err
		}, "interval 1µs is under the stream time's unit"},
		{"type", func(ctx stream.ProcessorContext) error {
			_, err := stream.Schedule(ctx, time.Second, stream.PunctuationType(7), func(time.Time, stream.Emitter[string, int64]) error { return nil })
			return err
		}, "unknown PunctuationType(7)"},
		{"nil", func(ctx stream.ProcessorContext) error {
			_, err := stream.Schedule[string, int64](ctx, time.Second, stream.StreamTime, nil)
			return err
		}, "punctuator is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := stream.NewBuilder("bad")
			stream.From(b, "in", serde.String, serde.Int64).
				Process(func() *initFunc { return &initFunc{init: tc.schedule} }, stream.Named("bad")).
				To("out", serde.String, serde.Int64)
			topo, err := b.Build()
			require.NoError(t, err)
			d := streamtest.New(topo)
			defer d.Close()
			require.ErrorContains(t, streamtest.Input(d, "in", serde.String, serde.Int64).Pipe("k", 1, atSec(1)), tc.want)
		})
	}
}

type initFunc struct {
	init func(stream.ProcessorContext) error
}

func (f *initFunc) Init(ctx stream.ProcessorContext) error { return f.init(ctx) }

func (f *initFunc) Process(stream.ProcessorContext, stream.Record[string, int64], stream.Emitter[string, int64]) error {
	return nil
}
