package stream_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
)

// storeReader resolves its store in Init (inInit) or in Process, reads
// the record's key from it and passes the record on. With recovers it
// swallows whatever In panics with, as careless user code might.
type storeReader struct {
	store    *stream.KeyValueStore[string, int64]
	inInit   bool
	recovers bool
}

func (r storeReader) Init(ctx stream.ProcessorContext) error {
	if r.inInit {
		_, _, err := r.store.In(ctx).Get("k")
		return err
	}
	return nil
}

func (r storeReader) Process(ctx stream.ProcessorContext, rec stream.Record[string, int64], out stream.Emitter[string, int64]) error {
	if r.recovers {
		defer func() { _ = recover() }()
	}
	if _, _, err := r.store.In(ctx).Get(rec.Key()); err != nil {
		return err
	}
	return out.Emit(rec)
}

// readerTopology has "sum" declare and use store "a", then "reader" read
// store a through reader's options: declared with WithStores or not.
func readerTopology(r func(a *stream.KeyValueStore[string, int64]) storeReader, opts ...stream.ProcessOption) *stream.Builder {
	b := stream.NewBuilder("undeclared")
	a := stream.NewKeyValueStore(b, "a", serde.String, serde.Int64)
	stream.From(b, "in", serde.String, serde.Int64).
		Process(func() summer { return summer{sums: a} }, stream.Named("sum"), stream.WithStores(a)).
		Process(func() storeReader { return r(a) }, append([]stream.ProcessOption{stream.Named("reader")}, opts...)...).
		To("out", serde.String, serde.Int64)
	return b
}

// A processor whose Init resolves a store its node did not declare is a
// Build error naming the node, the processor and the store; declared, the
// same Init passes Build's probe (which gives it an empty in-memory store).
func TestBuildRejectsStoreResolvedInInitWithoutDeclaring(t *testing.T) {
	b := readerTopology(func(a *stream.KeyValueStore[string, int64]) storeReader {
		return storeReader{store: a, inInit: true}
	})
	_, err := b.Build()
	var u *stream.UndeclaredStoreError
	require.ErrorAs(t, err, &u)
	require.Equal(t, stream.UndeclaredStoreError{Node: "reader", Processor: "stream_test.storeReader", Store: "a"}, *u)
	require.ErrorContains(t, err, `processor stream_test.storeReader (node reader) uses store "a", which the node does not declare`)
	require.ErrorContains(t, err, "stream.WithStores")

	b2 := stream.NewBuilder("declared")
	a := stream.NewKeyValueStore(b2, "a", serde.String, serde.Int64)
	stream.From(b2, "in", serde.String, serde.Int64).
		Process(func() storeReader { return storeReader{store: a, inInit: true} }, stream.Named("reader"), stream.WithStores(a)).
		To("out", serde.String, serde.Int64)
	_, err = b2.Build()
	require.NoError(t, err)
}

// A store resolved in Process without being declared fails the task, with
// an error naming the node and the store, whatever the error policy: the
// record goes neither to the DLQ nor past, and the task stays failed. A
// processor recovering In's panic does not hide it.
func TestUndeclaredStoreInProcessFailsTheTask(t *testing.T) {
	for name, recovers := range map[string]bool{"plain": false, "recovering processor": true} {
		t.Run(name, func(t *testing.T) {
			topo, err := readerTopology(func(a *stream.KeyValueStore[string, int64]) storeReader {
				return storeReader{store: a, recovers: recovers}
			}).Build()
			require.NoError(t, err, "Init resolves nothing: Build cannot see it")
			tk, err := topo.NewTask(topology.TaskID{}, topology.TaskConfig{})
			require.NoError(t, err)
			defer tk.Close()

			one, err := serde.Int64.Encode(1)
			require.NoError(t, err)
			for offset := range int64(2) {
				out, err := tk.Process(kafkaRecord("in", 0, offset, "k", string(one), at(1)), nil)
				var re *stream.RecordError
				require.ErrorAs(t, err, &re, "offset %d", offset)
				require.Equal(t, stream.Origin{Topic: "in", Partition: 0, Offset: offset}, re.Origin)
				var u *stream.UndeclaredStoreError
				require.ErrorAs(t, err, &u)
				require.Equal(t, "reader", u.Node)
				require.Equal(t, "a", u.Store)
				require.Empty(t, out, "no output and no DLQ record")
			}
			require.Zero(t, tk.Stats().DeadLetter)
		})
	}
}
