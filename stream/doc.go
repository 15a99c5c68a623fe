// Package stream is sluice's typed topology DSL and Processor API.
//
// A topology is built once, validated, and then run by the runtime (package
// txn) as a consumer group of workers, or by package streamtest in a unit
// test. The same compiled per-record step runs in both.
//
// # Building
//
//	b := stream.NewBuilder("orders-app")
//	orders := stream.From(b, "orders", serde.String, serde.JSON[Order]())
//	orders.
//		Filter(func(_ string, o Order) bool { return o.Cents > 0 }).
//		SelectKey(func(_ string, o Order) string { return o.CustomerID }).
//		To("orders-by-customer", serde.String, serde.JSON[Order]())
//	topo, err := b.Build()
//
// Types flow from the serdes: From returns a Stream[string, Order] here, and
// every operator's function is checked by the compiler against it. Serdes
// are passed positionally where a topic is read or written; there are no
// defaults to configure and nothing is looked up by name.
//
// Operators are methods of Stream (Go 1.27 generic methods, so type-changing
// operators such as Map chain too): Filter, FilterNot, Map, MapValues,
// SelectKey, FlatMap, FlatMapValues, Peek, Merge, Split, To and Process.
// Process adds a user Processor, the low-level API: it sees one Record at a
// time and emits any number of records of any types. With Schedule, a
// processor also runs a punctuator on a schedule of stream time
// (deterministic) or of the injected wall clock (not replay-deterministic).
//
// Stateful operators keep their state in the task's local store,
// changelogged to Kafka in the same transaction: GroupBy / GroupByKey then
// Count, Aggregate or Reduce (a Table), FromTable and the joins, windowed
// aggregations per key and window (WindowedBy for tumbling, hopping and
// sliding windows, SessionWindowedBy for session windows, which merge),
// and Dedup / DedupByKey, which drop the repeats of an id within a span of
// event time. Joins: a stream with a table (Join, LeftJoin) or a global
// table (JoinGlobal), a stream with a stream within a window.Join
// (JoinStream, LeftJoinStream, OuterJoinStream), a table with a table
// (Table.Join, LeftJoin, OuterJoin); tables also have Filter, MapValues
// and ToStream (docs/joins.md).
// Time-based state is driven by stream time, the largest record timestamp
// a task has seen (ProcessorContext.StreamTime), never by the wall clock: a
// replay after a crash decides the same.
//
// # Names
//
// Every operator that owns a store or an internal topic takes its name as
// its first argument, a required string: GroupBy, the aggregations
// (Count, Aggregate, Reduce, grouped, windowed or by session), Dedup,
// DedupByKey, the stream-stream and table-table joins, Repartition and
// NewKeyValueStore. The name is the store's (changelogged to
// `<app-id>-<name>-changelog`) or the topic's, so it must never depend on
// where the operator sits in the topology; an empty name is a Build error.
//
//	g.Count("clicks-per-minute")
//	s.DedupByKey("seen", serde.String, time.Hour)
//
// Every other operator's name is optional, given with the Named option
// (by default `<op>-<seq>`, shown by Describe and in DLQ headers).
// GroupByKey needs one only when it repartitions (after an operator that
// may change keys), and Process only when it declares stores (WithStores).
//
// # Options
//
// An option compiles only where it means something: each operator family
// takes its own option interface. Named returns a NameOption, which is all
// of Option (stateless operators, FromTable, FromGlobalTable, stream-table
// joins, GroupByKey), SourceOption (From, with WithTimestamp) and
// ProcessOption (Process, with WithStores). EmitOnClose is a WindowOption,
// taken only by windowed and session aggregations. Operators with a
// positional name and nothing else to configure take no options.
//
// Build validates the whole topology and reports every problem at once,
// each with what to fix. Topology.Describe prints it.
//
// # Execution model
//
// A topology splits into sub-topologies: groups of operators connected to
// each other, each fed by its own source topics. A task is one partition
// number of one sub-topology; the runtime creates one task per partition
// and runs each input record through it with Task.Process. That step is
// deterministic, performs no I/O and starts no goroutines: it appends the
// records to produce to a slice, and the runtime writes them inside the
// Kafka transaction that also commits the input offsets.
//
// Records move between operators as typed values through direct calls, with
// no boxing or reflection; a Filter → MapValues → To chain costs well under
// a microsecond per record and allocates only the outgoing Kafka record
// (in slabs).
//
// # Errors
//
// A record that fails to decode, fails to encode at a sink, or makes an
// operator return an error (or panic) is handled by the topology's
// ErrorPolicy: by default it goes to the dead-letter topic `<app-id>-dlq`
// in the same transaction, with headers naming the error and its source
// topic, partition and offset. Whatever the failing record had already
// emitted is discarded first: a record's effects are all or nothing.
//
// # Concurrency
//
// A Builder and its Streams are for one goroutine. A built Topology is
// immutable and safe for concurrent use; each task has its own operator
// instances, driven by one goroutine at a time.
package stream
