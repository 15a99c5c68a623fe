package stream_test

import (
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/state"
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

// epoch is an arbitrary event time; at(n) is n seconds after it.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return epoch.Add(time.Duration(sec) * time.Second) }

type Purchase struct {
	ID    string `json:"id"`
	Cents int64  `json:"cents"`
}

// out is an output record reduced to what most cases assert.
type out[K, V any] struct {
	Key   K
	Value V
	TS    time.Time
}

func o[K, V any](k K, v V, ts time.Time) out[K, V] { return out[K, V]{Key: k, Value: v, TS: ts} }

// in is one input record, with string key and value; topic "in" unless set.
type in struct {
	topic      string
	key, value string
	ts         time.Time
	headers    []string // key, value, key, value, ...
}

func hdr(key, value string) streamtest.Header { return streamtest.Header{Key: key, Value: value} }

func rec(key, value string, sec int) in { return in{key: key, value: value, ts: at(sec)} }

func (i in) on(topic string) in { i.topic = topic; return i }

func (i in) with(headers ...string) in { i.headers = headers; return i }

// newDriver builds b, failing the test on a Build error, and returns a
// driver closed at the end of the test.
func newDriver(t *testing.T, b *stream.Builder, opts ...streamtest.Option) (*stream.Topology, *streamtest.Driver) {
	t.Helper()
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo, opts...)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return topo, d
}

// pipe feeds inputs, encoded as strings, and fails the test on an error.
func pipe(t *testing.T, d *streamtest.Driver, inputs ...in) {
	t.Helper()
	for _, i := range inputs {
		require.NoError(t, pipeErr(d, i), "piping %+v", i)
	}
}

func pipeErr(d *streamtest.Driver, i in) error {
	topic := i.topic
	if topic == "" {
		topic = "in"
	}
	r := stream.NewRecord(i.key, i.value, i.ts)
	for j := 0; j+1 < len(i.headers); j += 2 {
		r = r.WithHeader(i.headers[j], []byte(i.headers[j+1]))
	}
	return streamtest.Input(d, topic, serde.String, serde.String).PipeRecord(r)
}

// read returns the unread records of topic. It never returns nil, so that
// "no output" compares equal to an empty literal.
func read[K, V any](t *testing.T, d *streamtest.Driver, topic string, ks serde.Serde[K], vs serde.Serde[V]) []out[K, V] {
	t.Helper()
	recs, err := streamtest.Output(d, topic, ks, vs).ReadAll()
	require.NoError(t, err)
	res := []out[K, V]{}
	for _, r := range recs {
		res = append(res, o(r.Key, r.Value, r.Timestamp))
	}
	return res
}

func readStrings(t *testing.T, d *streamtest.Driver, topic string) []out[string, string] {
	t.Helper()
	return read(t, d, topic, serde.String, serde.String)
}

type strs = []out[string, string]

func fromIn(b *stream.Builder) stream.Stream[string, string] {
	return stream.From(b, "in", serde.String, serde.String)
}

func TestOperators(t *testing.T) {
	var peeked []string
	startsWithKeep := func(_, v string) bool { return strings.HasPrefix(v, "keep") }
	filterInputs := []in{rec("a", "keep-1", 1), rec("b", "drop", 2), rec("c", "keep-2", 3), rec("d", "", 4)}
	splitInputs := []in{
		rec("a", "abcd", 1), // big and even: the first branch, big, wins
		rec("b", "ab", 2),   // even
		rec("c", "abc", 3),  // big
		rec("d", "a", 4),    // neither
		rec("e", "", 5),     // even (len 0)
	}
	bigEvenBranches := func(withDefault bool) []stream.Branch[string, string] {
		br := []stream.Branch[string, string]{
			{Name: "big", Pred: func(_, v string) bool { return len(v) >= 3 }},
			{Name: "even", Pred: func(_, v string) bool { return len(v)%2 == 0 }},
		}
		if withDefault {
			br = append(br, stream.Branch[string, string]{Name: "rest"})
		}
		return br
	}
	readSplit := func(topics ...string) func(t *testing.T, d *streamtest.Driver) any {
		return func(t *testing.T, d *streamtest.Driver) any {
			res := map[string]strs{}
			for _, topic := range topics {
				res[topic] = readStrings(t, d, topic)
			}
			return res
		}
	}

	tests := []struct {
		name     string
		topology func(b *stream.Builder)
		inputs   []in
		// read returns the outputs to compare with want; the default
		// reads topic "out" as strings.
		read  func(t *testing.T, d *streamtest.Driver) any
		want  any
		check func(t *testing.T, topo *stream.Topology)
	}{
		{
			name: "Filter keeps matching records",
			topology: func(b *stream.Builder) {
				fromIn(b).Filter(startsWithKeep).To("out", serde.String, serde.String)
			},
			inputs: filterInputs,
			want:   strs{o("a", "keep-1", at(1)), o("c", "keep-2", at(3))},
		},
		{
			name: "Filter predicate sees the key",
			topology: func(b *stream.Builder) {
				fromIn(b).Filter(func(k, _ string) bool { return k == "b" }).To("out", serde.String, serde.String)
			},
			inputs: filterInputs,
			want:   strs{o("b", "drop", at(2))},
		},
		{
			name: "Filter dropping everything",
			topology: func(b *stream.Builder) {
				fromIn(b).Filter(func(_, _ string) bool { return false }).To("out", serde.String, serde.String)
			},
			inputs: filterInputs,
			want:   strs{},
		},
		{
			name: "FilterNot drops matching records",
			topology: func(b *stream.Builder) {
				fromIn(b).FilterNot(startsWithKeep).To("out", serde.String, serde.String)
			},
			inputs: filterInputs,
			want:   strs{o("b", "drop", at(2)), o("d", "", at(4))},
		},
		{
			name: "Map changes key and value types",
			topology: func(b *stream.Builder) {
				fromIn(b).Map(func(k, v string) (int64, Purchase) {
					cents, _ := strconv.ParseInt(v, 10, 64)
					return int64(len(k)), Purchase{ID: k, Cents: cents}
				}).To("out", serde.Int64, serde.JSON[Purchase]())
			},
			inputs: []in{rec("ab", "100", 1), rec("xyz", "-5", 2), rec("", "0", 3)},
			read: func(t *testing.T, d *streamtest.Driver) any {
				return read(t, d, "out", serde.Int64, serde.JSON[Purchase]())
			},
			want: []out[int64, Purchase]{
				o(int64(2), Purchase{ID: "ab", Cents: 100}, at(1)),
				o(int64(3), Purchase{ID: "xyz", Cents: -5}, at(2)),
				o(int64(0), Purchase{ID: "", Cents: 0}, at(3)),
			},
		},
		{
			name: "MapValues changes the value type and keeps key and timestamp",
			topology: func(b *stream.Builder) {
				fromIn(b).MapValues(func(v string) int64 { return int64(len(v)) }).To("out", serde.String, serde.Int64)
			},
			inputs: []in{rec("a", "xyz", 7), rec("b", "", 3)},
			read: func(t *testing.T, d *streamtest.Driver) any {
				return read(t, d, "out", serde.String, serde.Int64)
			},
			want: []out[string, int64]{o("a", int64(3), at(7)), o("b", int64(0), at(3))},
		},
		{
			name: "SelectKey replaces the key from key and value",
			topology: func(b *stream.Builder) {
				fromIn(b).SelectKey(func(k, v string) int64 { return int64(len(k) * len(v)) }).To("out", serde.Int64, serde.String)
			},
			inputs: []in{rec("ab", "xyz", 1), rec("a", "v", 2)},
			read: func(t *testing.T, d *streamtest.Driver) any {
				return read(t, d, "out", serde.Int64, serde.String)
			},
			want: []out[int64, string]{o(int64(6), "xyz", at(1)), o(int64(1), "v", at(2))},
		},
		{
			name: "FlatMap emits 0, 1 and many records in order",
			topology: func(b *stream.Builder) {
				fromIn(b).FlatMap(func(k, v string) []stream.Pair[string, int64] {
					var kvs []stream.Pair[string, int64]
					for i, w := range strings.Fields(v) {
						kvs = append(kvs, stream.KV(k+"."+w, int64(i)))
					}
					return kvs
				}).To("out", serde.String, serde.Int64)
			},
			inputs: []in{rec("a", "", 1), rec("b", "x", 2), rec("c", "x y z", 3), rec("d", "  ", 4), rec("e", "q", 5)},
			read: func(t *testing.T, d *streamtest.Driver) any {
				return read(t, d, "out", serde.String, serde.Int64)
			},
			want: []out[string, int64]{
				o("b.x", int64(0), at(2)),
				o("c.x", int64(0), at(3)), o("c.y", int64(1), at(3)), o("c.z", int64(2), at(3)),
				o("e.q", int64(0), at(5)),
			},
		},
		{
			name: "FlatMapValues emits 0, 1 and many values with the input key",
			topology: func(b *stream.Builder) {
				fromIn(b).FlatMapValues(func(v string) []int64 {
					var n []int64
					for _, w := range strings.Fields(v) {
						n = append(n, int64(len(w)))
					}
					return n
				}).To("out", serde.String, serde.Int64)
			},
			inputs: []in{rec("a", "", 1), rec("b", "xx", 2), rec("c", "x yy zzz", 3)},
			read: func(t *testing.T, d *streamtest.Driver) any {
				return read(t, d, "out", serde.String, serde.Int64)
			},
			want: []out[string, int64]{
				o("b", int64(2), at(2)),
				o("c", int64(1), at(3)), o("c", int64(2), at(3)), o("c", int64(3), at(3)),
			},
		},
		{
			name: "Peek sees every record and passes it on unchanged",
			topology: func(b *stream.Builder) {
				fromIn(b).Peek(func(k, v string) { peeked = append(peeked, k+"="+v) }).To("out", serde.String, serde.String)
			},
			inputs: filterInputs,
			want:   strs{o("a", "keep-1", at(1)), o("b", "drop", at(2)), o("c", "keep-2", at(3)), o("d", "", at(4))},
			check: func(t *testing.T, _ *stream.Topology) {
				require.Equal(t, []string{"a=keep-1", "b=drop", "c=keep-2", "d="}, peeked)
			},
		},
		{
			name: "Merge has the records of both inputs in one sub-topology",
			topology: func(b *stream.Builder) {
				left := fromIn(b)
				right := stream.From(b, "in2", serde.String, serde.String).MapValues(strings.ToUpper)
				left.Merge(right).To("out", serde.String, serde.String)
			},
			inputs: []in{rec("a", "l1", 1), rec("b", "r1", 2).on("in2"), rec("c", "l2", 3), rec("d", "r2", 4).on("in2")},
			want:   strs{o("a", "l1", at(1)), o("b", "R1", at(2)), o("c", "l2", at(3)), o("d", "R2", at(4))},
			check: func(t *testing.T, topo *stream.Topology) {
				require.Equal(t, []topology.Subtopology{{ID: 0, SourceTopics: []string{"in", "in2"}}}, topo.Subtopologies())
				for _, topic := range []string{"in", "in2"} {
					sub, ok := topo.SubtopologyOf(topic)
					require.True(t, ok)
					require.Equal(t, 0, sub)
				}
			},
		},
		{
			name: "Split: first matching branch wins, default branch takes the rest",
			topology: func(b *stream.Builder) {
				br := fromIn(b).Split(bigEvenBranches(true), stream.Named("route"))
				require.Len(t, br, 3)
				br[0].To("big", serde.String, serde.String)
				br[1].To("even", serde.String, serde.String)
				br[2].To("rest", serde.String, serde.String)
			},
			inputs: splitInputs,
			read:   readSplit("big", "even", "rest"),
			want: map[string]strs{
				"big":  {o("a", "abcd", at(1)), o("c", "abc", at(3))},
				"even": {o("b", "ab", at(2)), o("e", "", at(5))},
				"rest": {o("d", "a", at(4))},
			},
			check: func(t *testing.T, topo *stream.Topology) {
				desc := topo.Describe()
				for _, br := range []string{"route-big", "route-even", "route-rest"} {
					require.Contains(t, desc, "Processor: "+br+" (branch)\n")
				}
				require.Contains(t, desc, "Processor: route (split)\n      --> route-big, route-even, route-rest\n")
			},
		},
		{
			name: "Split drops records matching no branch; unnamed split names its branches after its default name",
			topology: func(b *stream.Builder) {
				br := fromIn(b).Split(bigEvenBranches(false))
				br[0].To("big", serde.String, serde.String)
				br[1].To("even", serde.String, serde.String)
			},
			inputs: splitInputs,
			read:   readSplit("big", "even"),
			want: map[string]strs{
				"big":  {o("a", "abcd", at(1)), o("c", "abc", at(3))},
				"even": {o("b", "ab", at(2)), o("e", "", at(5))},
			},
			check: func(t *testing.T, topo *stream.Topology) {
				desc := topo.Describe()
				require.Contains(t, desc, "Processor: split-0001 (split)\n")
				require.Contains(t, desc, "Processor: split-0001-big (branch)\n")
				require.Contains(t, desc, "Processor: split-0001-even (branch)\n")
			},
		},
		{
			name: "Split branch streams chain further operators",
			topology: func(b *stream.Builder) {
				br := fromIn(b).Split([]stream.Branch[string, string]{
					{Name: "a", Pred: func(k, _ string) bool { return k == "a" }},
					{Name: "other"},
				})
				br[0].MapValues(strings.ToUpper).To("out", serde.String, serde.String)
				br[1].Filter(func(_, v string) bool { return v != "" }).To("out", serde.String, serde.String)
			},
			inputs: []in{rec("a", "x", 1), rec("b", "y", 2), rec("c", "", 3), rec("a", "z", 4)},
			want:   strs{o("a", "X", at(1)), o("b", "y", at(2)), o("a", "Z", at(4))},
		},
		{
			name: "To keeps timestamp and headers",
			topology: func(b *stream.Builder) {
				fromIn(b).To("out", serde.String, serde.String)
			},
			inputs: []in{
				rec("a", "1", 5).with("trace", "t-1", "h", "x", "h", "y"),
				rec("b", "2", 2),
				rec("c", "3", 9).with("empty", ""),
			},
			read: func(t *testing.T, d *streamtest.Driver) any {
				recs, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
				require.NoError(t, err)
				return recs
			},
			want: []streamtest.Record[string, string]{
				{Key: "a", Value: "1", Timestamp: at(5), Offset: 0, Headers: []streamtest.Header{hdr("trace", "t-1"), hdr("h", "x"), hdr("h", "y")}},
				{Key: "b", Value: "2", Timestamp: at(2), Offset: 1},
				{Key: "c", Value: "3", Timestamp: at(9), Offset: 2, Headers: []streamtest.Header{hdr("empty", "")}},
			},
		},
		{
			name: "operators keep headers through the chain",
			topology: func(b *stream.Builder) {
				fromIn(b).
					Map(func(k, v string) (string, string) { return v, k }).
					MapValues(strings.ToUpper).
					FlatMapValues(func(v string) []string { return []string{v, v + v} }).
					To("out", serde.String, serde.String)
			},
			inputs: []in{rec("k", "v", 1).with("trace", "t-1")},
			read: func(t *testing.T, d *streamtest.Driver) any {
				recs, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
				require.NoError(t, err)
				return recs
			},
			want: []streamtest.Record[string, string]{
				{Key: "v", Value: "K", Timestamp: at(1), Offset: 0, Headers: []streamtest.Header{hdr("trace", "t-1")}},
				{Key: "v", Value: "KK", Timestamp: at(1), Offset: 1, Headers: []streamtest.Header{hdr("trace", "t-1")}},
			},
		},
		{
			name: "one stream feeds several operators, in the order they were added",
			topology: func(b *stream.Builder) {
				s := fromIn(b)
				s.To("out", serde.String, serde.String)
				s.MapValues(strings.ToUpper).To("out", serde.String, serde.String)
				s.Filter(func(k, _ string) bool { return k == "b" }).To("out", serde.String, serde.String)
			},
			inputs: []in{rec("a", "x", 1), rec("b", "y", 2)},
			want:   strs{o("a", "x", at(1)), o("a", "X", at(1)), o("b", "y", at(2)), o("b", "Y", at(2)), o("b", "y", at(2))},
		},
		{
			name: "records written to a topic the topology reads are processed downstream",
			topology: func(b *stream.Builder) {
				fromIn(b).MapValues(strings.ToUpper).To("mid", serde.String, serde.String)
				stream.From(b, "mid", serde.String, serde.String).SelectKey(func(k, v string) string { return k + v }).To("out", serde.String, serde.String)
			},
			inputs: []in{rec("a", "x", 1), rec("b", "y", 2)},
			want:   strs{o("aX", "X", at(1)), o("bY", "Y", at(2))},
			check: func(t *testing.T, topo *stream.Topology) {
				require.Equal(t, []topology.Subtopology{
					{ID: 0, SourceTopics: []string{"in"}},
					{ID: 1, SourceTopics: []string{"mid"}},
				}, topo.Subtopologies())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := stream.NewBuilder("ops")
			tt.topology(b)
			topo, d := newDriver(t, b)
			pipe(t, d, tt.inputs...)
			readFn := tt.read
			if readFn == nil {
				readFn = func(t *testing.T, d *streamtest.Driver) any { return readStrings(t, d, "out") }
			}
			require.Equal(t, tt.want, readFn(t, d))
			require.Zero(t, d.DLQ().Len(), "no record should fail")
			require.Equal(t, int64(0), d.Stats().DeadLetter)
			if tt.check != nil {
				tt.check(t, topo)
			}
		})
	}
}

// kafkaPartition is the partition Kafka's default partitioner (murmur2 of
// the key) picks for key among n partitions.
func kafkaPartition(topic, key string, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: []byte(key)}, n))
}

func TestToPartitionsByKey(t *testing.T) {
	const partitions = 4
	b := stream.NewBuilder("parts")
	fromIn(b).To("out", serde.String, serde.String)
	_, d := newDriver(t, b, streamtest.WithPartitions("out", partitions))

	var inputs []in
	for round := range 3 {
		for k := range 12 {
			inputs = append(inputs, rec(fmt.Sprintf("key-%d", k), strconv.Itoa(round), round*100+k))
		}
	}
	pipe(t, d, inputs...)

	recs, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(inputs))
	partitionOf := map[string]int32{}
	nextOffset := map[int32]int64{}
	for i, r := range recs {
		require.Equal(t, inputs[i].key, r.Key, "records keep their order")
		require.Equal(t, inputs[i].ts, r.Timestamp)
		if p, ok := partitionOf[r.Key]; ok {
			require.Equal(t, p, r.Partition, "key %s moved partition", r.Key)
		}
		partitionOf[r.Key] = r.Partition
		require.Equal(t, kafkaPartition("out", r.Key, partitions), r.Partition, "murmur2 partition of %s", r.Key)
		require.Equal(t, nextOffset[r.Partition], r.Offset, "offsets are dense per partition")
		nextOffset[r.Partition]++
	}
	require.Greater(t, len(nextOffset), 1, "12 keys over 4 partitions should use more than one partition")
}

// Keys must land where a Java producer would put them, so that a sluice
// sink and a Kafka Streams app co-partition. The hashes are the golden
// vectors of Kafka's UtilsTest.testMurmur2; the default partitioner takes
// (hash & 0x7fffffff) % partitions.
func TestToMatchesKafkaDefaultPartitioner(t *testing.T) {
	const partitions = 7
	golden := []struct {
		key  string
		hash int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	b := stream.NewBuilder("parts")
	fromIn(b).To("out", serde.String, serde.String)
	_, d := newDriver(t, b, streamtest.WithPartitions("out", partitions))
	for i, g := range golden {
		pipe(t, d, rec(g.key, "v", i))
	}
	recs, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(golden))
	for i, g := range golden {
		require.Equal(t, g.key, recs[i].Key)
		require.Equal(t, (g.hash&0x7fffffff)%partitions, recs[i].Partition, "key %q", g.key)
	}
}

// lifecycle is a processor counting its Init and Close calls across tasks.
// The driver is single-goroutine, so plain counters do.
type lifecycle struct {
	inits, closes *int
	partition     int32
	initTime      time.Time
}

func (p *lifecycle) Init(ctx stream.ProcessorContext) error {
	*p.inits++
	p.partition = ctx.Partition()
	p.initTime = ctx.StreamTime()
	return nil
}

func (p *lifecycle) Close() error {
	*p.closes++
	return nil
}

// Process emits the task partition it saw at Init, and at Process.
func (p *lifecycle) Process(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, int64]) error {
	if !p.initTime.IsZero() {
		return errors.New("stream time at Init should be zero")
	}
	if err := out.Emit(r.WithValue(int64(p.partition))); err != nil {
		return err
	}
	return out.Emit(r.WithValue(int64(ctx.Partition())))
}

func TestProcessInitAndCloseOncePerTask(t *testing.T) {
	var inits, closes int
	b := stream.NewBuilder("proc")
	fromIn(b).
		Process(func() *lifecycle { return &lifecycle{inits: &inits, closes: &closes} }).
		To("out", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	require.Equal(t, []int{1, 1}, []int{inits, closes}, "Build probes the processor's Init once, and closes it")
	inits, closes = 0, 0
	d := streamtest.New(topo, streamtest.WithPartitions("in", 2), streamtest.WithPartitions("out", 2))
	defer d.Close()

	require.Zero(t, inits, "tasks are created on their first record")
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	wantParts := map[int32]bool{}
	for i, k := range keys {
		pipe(t, d, rec(k, "v", i))
		wantParts[kafkaPartition("in", k, 2)] = true
	}
	require.Len(t, wantParts, 2, "the keys should cover both partitions")
	require.Equal(t, 2, inits, "Init once per task, two partitions")
	require.Zero(t, closes)

	recs, err := streamtest.Output(d, "out", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2*len(keys))
	for i, k := range keys {
		want := int64(kafkaPartition("in", k, 2))
		require.Equal(t, k, recs[2*i].Key)
		require.Equal(t, want, recs[2*i].Value, "partition at Init for %s", k)
		require.Equal(t, want, recs[2*i+1].Value, "ctx.Partition() for %s", k)
	}

	require.NoError(t, d.Close())
	require.Equal(t, 2, closes, "Close once per task")
	require.NoError(t, d.Close())
	require.Equal(t, 2, closes, "closing again closes nothing")
	require.Equal(t, 2, inits)
}

func TestProcess(t *testing.T) {
	wall := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name     string
		topology func(b *stream.Builder)
		// run pipes the inputs; it may move the wall clock between them.
		run  func(t *testing.T, d *streamtest.Driver)
		read func(t *testing.T, d *streamtest.Driver) any
		want any
	}{
		{
			name: "emits several records of new types",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(func() stream.ProcessorFunc[string, string, int64, Purchase] {
					return func(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[int64, Purchase]) error {
						for i, w := range strings.Fields(r.Value()) {
							o := stream.NewRecord(int64(i), Purchase{ID: r.Key() + "/" + w, Cents: int64(len(w))}, r.Timestamp().Add(time.Duration(i)*time.Millisecond))
							if err := out.Emit(o); err != nil {
								return err
							}
						}
						return nil
					}
				}).To("out", serde.Int64, serde.JSON[Purchase]())
			},
			run: func(t *testing.T, d *streamtest.Driver) {
				pipe(t, d, rec("a", "x yy zzz", 1), rec("b", "", 2), rec("c", "w", 3))
			},
			read: func(t *testing.T, d *streamtest.Driver) any {
				return read(t, d, "out", serde.Int64, serde.JSON[Purchase]())
			},
			want: []out[int64, Purchase]{
				o(int64(0), Purchase{ID: "a/x", Cents: 1}, at(1)),
				o(int64(1), Purchase{ID: "a/yy", Cents: 2}, at(1).Add(time.Millisecond)),
				o(int64(2), Purchase{ID: "a/zzz", Cents: 3}, at(1).Add(2*time.Millisecond)),
				o(int64(0), Purchase{ID: "c/w", Cents: 1}, at(3)),
			},
		},
		{
			name: "StreamTime is the largest timestamp seen, including the current record",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
					return func(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
						return out.Emit(r.WithValue(ctx.StreamTime().Format(time.RFC3339)))
					}
				}).To("out", serde.String, serde.String)
			},
			run: func(t *testing.T, d *streamtest.Driver) {
				pipe(t, d, rec("a", "", 10), rec("b", "", 30), rec("c", "", 20), rec("d", "", 40))
			},
			want: strs{
				o("a", at(10).Format(time.RFC3339), at(10)),
				o("b", at(30).Format(time.RFC3339), at(30)),
				o("c", at(30).Format(time.RFC3339), at(20)),
				o("d", at(40).Format(time.RFC3339), at(40)),
			},
		},
		{
			name: "Now follows the driver's wall clock, not record time",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
					return func(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
						return out.Emit(r.WithValue(ctx.Now().Format(time.RFC3339)))
					}
				}).To("out", serde.String, serde.String)
			},
			run: func(t *testing.T, d *streamtest.Driver) {
				require.Equal(t, wall, d.Now())
				pipe(t, d, rec("a", "", 1))
				d.AdvanceWallClock(90 * time.Second)
				pipe(t, d, rec("b", "", 1), rec("c", "", 500))
				d.AdvanceWallClock(time.Hour)
				pipe(t, d, rec("d", "", 2))
			},
			want: strs{
				o("a", wall.Format(time.RFC3339), at(1)),
				o("b", wall.Add(90*time.Second).Format(time.RFC3339), at(1)),
				o("c", wall.Add(90*time.Second).Format(time.RFC3339), at(500)),
				o("d", wall.Add(time.Hour+90*time.Second).Format(time.RFC3339), at(2)),
			},
		},
		{
			name: "ProcessorContext names the app, node, partition and sub-topology",
			topology: func(b *stream.Builder) {
				stream.From(b, "other", serde.String, serde.String).To("sink-of-other", serde.String, serde.String)
				fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
					return func(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
						return out.Emit(r.WithValue(fmt.Sprintf("%s/%s/%d/%d", ctx.AppID(), ctx.Node(), ctx.Subtopology(), ctx.Partition())))
					}
				}, stream.Named("describe-ctx")).To("out", serde.String, serde.String)
			},
			run: func(t *testing.T, d *streamtest.Driver) {
				pipe(t, d, rec("a", "", 1))
			},
			want: strs{o("a", "proc/describe-ctx/1/0", at(1))},
		},
		{
			name: "Record keeps headers and origin into the processor",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
					return func(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
						h, _ := r.Headers().Get("trace")
						og := r.Origin()
						return out.Emit(r.WithValue(fmt.Sprintf("%s %s[%d]@%d", h, og.Topic, og.Partition, og.Offset)).WithHeader("seen", []byte("yes")))
					}
				}).To("out", serde.String, serde.String)
			},
			run: func(t *testing.T, d *streamtest.Driver) {
				pipe(t, d, rec("a", "", 1).with("trace", "t-1"), rec("b", "", 2).with("trace", "t-2"))
			},
			read: func(t *testing.T, d *streamtest.Driver) any {
				recs, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
				require.NoError(t, err)
				return recs
			},
			want: []streamtest.Record[string, string]{
				{Key: "a", Value: "t-1 in[0]@0", Timestamp: at(1), Offset: 0, Headers: []streamtest.Header{hdr("trace", "t-1"), hdr("seen", "yes")}},
				{Key: "b", Value: "t-2 in[0]@1", Timestamp: at(2), Offset: 1, Headers: []streamtest.Header{hdr("trace", "t-2"), hdr("seen", "yes")}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := stream.NewBuilder("proc")
			tt.topology(b)
			_, d := newDriver(t, b, streamtest.WithWallClock(wall))
			tt.run(t, d)
			readFn := tt.read
			if readFn == nil {
				readFn = func(t *testing.T, d *streamtest.Driver) any { return readStrings(t, d, "out") }
			}
			require.Equal(t, tt.want, readFn(t, d))
			require.Zero(t, d.DLQ().Len())
		})
	}
}

// Error handling.

// failOn is a processor that fails on records whose value is "fail", panics
// on "panic", and passes every other record on.
func failOn() stream.ProcessorFunc[string, string, string, string] {
	return func(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
		switch r.Value() {
		case "fail":
			return errors.New("value refused")
		case "panic":
			panic("processor exploded")
		}
		return out.Emit(r)
	}
}

type dlqWant struct {
	key, value string
	ts         time.Time
	headers    []streamtest.Header // the input's own headers
	topic      string
	partition  int32
	offset     int64
	errHas     []string // substrings of sluice.error
}

func requireDLQ(t *testing.T, d *streamtest.Driver, want ...dlqWant) {
	t.Helper()
	recs, err := d.DLQ().ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(want))
	for i, w := range want {
		r := recs[i]
		require.Equal(t, w.key, string(r.Key), "DLQ key is the input's")
		require.Equal(t, w.value, string(r.Value), "DLQ value is the input's")
		require.Equal(t, w.ts, r.Timestamp, "DLQ timestamp is the input's")
		var keys []string
		for _, h := range r.Headers {
			keys = append(keys, h.Key)
		}
		require.Len(t, r.Headers, len(w.headers)+4, "headers: %v", keys)
		if len(w.headers) > 0 {
			require.Equal(t, w.headers, r.Headers[:len(w.headers)], "the input's headers come first, unchanged")
		}
		require.Equal(t, []string{stream.HeaderError, stream.HeaderTopic, stream.HeaderPartition, stream.HeaderOffset}, keys[len(w.headers):])
		msg := r.Header(stream.HeaderError)
		require.NotEmpty(t, msg)
		for _, s := range w.errHas {
			require.Contains(t, msg, s, "sluice.error")
		}
		require.Equal(t, w.topic, r.Header(stream.HeaderTopic))
		require.Equal(t, strconv.Itoa(int(w.partition)), r.Header(stream.HeaderPartition))
		require.Equal(t, strconv.FormatInt(w.offset, 10), r.Header(stream.HeaderOffset))
	}
}

func TestDLQMalformedValue(t *testing.T) {
	b := stream.NewBuilder("shop")
	stream.From(b, "orders", serde.String, serde.JSON[Purchase](), stream.Named("orders-source")).
		MapValues(func(o Purchase) int64 { return o.Cents }).
		To("cents", serde.String, serde.Int64)
	topo, d := newDriver(t, b)
	its := topo.InternalTopics()
	require.Len(t, its, 1)
	require.Equal(t, "shop-dlq", its[0].Name)
	require.Equal(t, "dlq", its[0].Purpose)

	pipe(t, d,
		in{topic: "orders", key: "o-1", value: `{"id":"o-1","cents":100}`, ts: at(1)},
		in{topic: "orders", key: "o-2", value: `{"id":"o-2","cents":`, ts: at(2), headers: []string{"trace", "t-2"}},
		in{topic: "orders", key: "o-3", value: `{"id":"o-3","cents":300}`, ts: at(3)},
	)
	require.Equal(t, []out[string, int64]{o("o-1", int64(100), at(1)), o("o-3", int64(300), at(3))},
		read(t, d, "cents", serde.String, serde.Int64), "later records go on")
	requireDLQ(t, d, dlqWant{
		key: "o-2", value: `{"id":"o-2","cents":`, ts: at(2),
		headers: []streamtest.Header{hdr("trace", "t-2")},
		topic:   "orders", partition: 0, offset: 1,
		errHas: []string{"orders-source", "value", "json decode", "stream_test.Purchase"},
	})
	require.Equal(t, topology.TaskStats{Processed: 3, DeadLetter: 1}, d.Stats())
}

func TestDLQMalformedKey(t *testing.T) {
	b := stream.NewBuilder("shop")
	stream.From(b, "in", serde.Int64, serde.String).To("out", serde.Int64, serde.String)
	_, d := newDriver(t, b)
	require.NoError(t, d.PipeBytes("in", []byte{1, 2, 3}, []byte("v"), at(1)))
	require.NoError(t, d.PipeBytes("in", nil, []byte("tombstone key"), at(2)))
	require.Empty(t, read(t, d, "out", serde.Int64, serde.String))
	requireDLQ(t, d,
		dlqWant{key: "\x01\x02\x03", value: "v", ts: at(1), topic: "in", offset: 0,
			errHas: []string{"source-0000", "key", "int64 decode", "want 8 bytes, got 3"}},
		dlqWant{key: "", value: "tombstone key", ts: at(2), topic: "in", offset: 1,
			errHas: []string{"source-0000", "key", serde.ErrNull.Error()}},
	)
}

func TestDLQProcessorErrorAndPanic(t *testing.T) {
	const partitions = 3
	b := stream.NewBuilder("shop")
	fromIn(b).Process(failOn, stream.Named("checker")).To("out", serde.String, serde.String)
	_, d := newDriver(t, b, streamtest.WithPartitions("in", partitions))

	// The DLQ names the partition and offset of each failing input, so
	// track them as the driver assigns them.
	offsets := map[int32]int64{}
	var wantOut strs
	var wantDLQ []dlqWant
	inputs := []in{
		rec("k1", "ok-1", 1), rec("k2", "fail", 2).with("trace", "t-2"), rec("k3", "ok-3", 3),
		rec("k1", "panic", 4), rec("k2", "ok-5", 5), rec("k4", "fail", 6), rec("k4", "ok-7", 7),
	}
	for _, i := range inputs {
		p := kafkaPartition("in", i.key, partitions)
		off := offsets[p]
		offsets[p]++
		pipe(t, d, i)
		var hs []streamtest.Header
		for j := 0; j < len(i.headers); j += 2 {
			hs = append(hs, streamtest.Header{Key: i.headers[j], Value: i.headers[j+1]})
		}
		switch i.value {
		case "fail":
			wantDLQ = append(wantDLQ, dlqWant{key: i.key, value: i.value, ts: i.ts, headers: hs, topic: "in", partition: p, offset: off,
				errHas: []string{"checker", "value refused"}})
		case "panic":
			wantDLQ = append(wantDLQ, dlqWant{key: i.key, value: i.value, ts: i.ts, headers: hs, topic: "in", partition: p, offset: off,
				errHas: []string{"panic", "processor exploded"}})
		default:
			wantOut = append(wantOut, o(i.key, i.value, i.ts))
		}
	}
	require.Greater(t, len(offsets), 1, "inputs should span partitions")
	require.Equal(t, wantOut, readStrings(t, d, "out"))
	requireDLQ(t, d, wantDLQ...)
	require.Equal(t, topology.TaskStats{Processed: int64(len(inputs)), DeadLetter: 3}, d.Stats())
}

func TestDLQPanicInStatelessOperator(t *testing.T) {
	b := stream.NewBuilder("shop")
	fromIn(b).MapValues(func(v string) string {
		if v == "" {
			panic("empty value")
		}
		return strings.ToUpper(v)
	}).To("out", serde.String, serde.String)
	_, d := newDriver(t, b)
	pipe(t, d, rec("a", "x", 1), rec("b", "", 2), rec("c", "y", 3))
	require.Equal(t, strs{o("a", "X", at(1)), o("c", "Y", at(3))}, readStrings(t, d, "out"))
	requireDLQ(t, d, dlqWant{key: "b", value: "", ts: at(2), topic: "in", offset: 1, errHas: []string{"panic", "empty value"}})
}

// A failing record's effects are all or nothing: what it had emitted before
// the failure is discarded, whatever operator emitted it.
func TestErrorDiscardsOutputsAlreadyEmitted(t *testing.T) {
	failingEncode := serde.Func("picky",
		func(v string) ([]byte, error) {
			if v == "bad" {
				return nil, errors.New("cannot encode bad")
			}
			return []byte(v), nil
		},
		func(b []byte) (string, error) { return string(b), nil })

	tests := []struct {
		name     string
		topology func(b *stream.Builder)
		inputs   []in
		want     map[string]strs
		errHas   []string
		dlqTopic string // the failing record's topic; "in" when empty
	}{
		{
			name: "an earlier sink's output, then a processor error in a later branch of the fan-out",
			topology: func(b *stream.Builder) {
				s := fromIn(b)
				s.To("a", serde.String, serde.String)
				s.Process(failOn, stream.Named("checker")).To("b", serde.String, serde.String)
			},
			inputs: []in{rec("k1", "ok", 1), rec("k2", "fail", 2), rec("k3", "ok", 3)},
			want: map[string]strs{
				"a": {o("k1", "ok", at(1)), o("k3", "ok", at(3))},
				"b": {o("k1", "ok", at(1)), o("k3", "ok", at(3))},
			},
			errHas: []string{"checker", "value refused"},
		},
		{
			name: "a Split branch's sink, then a processor error in the same record's other path",
			topology: func(b *stream.Builder) {
				s := fromIn(b)
				br := s.Split([]stream.Branch[string, string]{
					{Name: "k2", Pred: func(k, _ string) bool { return k == "k2" }},
					{Name: "other"},
				}, stream.Named("route"))
				br[0].To("a", serde.String, serde.String)
				br[1].To("a", serde.String, serde.String)
				s.Process(failOn, stream.Named("checker")).To("b", serde.String, serde.String)
			},
			inputs: []in{rec("k1", "ok", 1), rec("k2", "fail", 2), rec("k3", "ok", 3)},
			want: map[string]strs{
				"a": {o("k1", "ok", at(1)), o("k3", "ok", at(3))},
				"b": {o("k1", "ok", at(1)), o("k3", "ok", at(3))},
			},
			errHas: []string{"checker", "value refused"},
		},
		{
			name: "a processor emits, then returns an error",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
					return func(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
						if err := out.Emit(r.WithValue("first")); err != nil {
							return err
						}
						if r.Value() == "fail" {
							return errors.New("after emitting")
						}
						return out.Emit(r.WithValue("second"))
					}
				}, stream.Named("emitter")).To("a", serde.String, serde.String)
			},
			inputs: []in{rec("k1", "ok", 1), rec("k2", "fail", 2), rec("k3", "ok", 3)},
			want: map[string]strs{
				"a": {o("k1", "first", at(1)), o("k1", "second", at(1)), o("k3", "first", at(3)), o("k3", "second", at(3))},
			},
			errHas: []string{"emitter", "after emitting"},
		},
		{
			name: "FlatMap's first output is written, its second fails to encode",
			topology: func(b *stream.Builder) {
				fromIn(b).FlatMapValues(strings.Fields).To("a", serde.String, failingEncode, stream.Named("picky-sink"))
			},
			inputs: []in{rec("k1", "x y", 1), rec("k2", "good bad good", 2), rec("k3", "z", 3)},
			want: map[string]strs{
				"a": {o("k1", "x", at(1)), o("k1", "y", at(1)), o("k3", "z", at(3))},
			},
			errHas: []string{"picky-sink", "value", "picky encode string", "cannot encode bad"},
		},
		{
			name: "a processor swallows the downstream encode error",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(func() stream.ProcessorFunc[string, string, string, string] {
					return func(_ stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
						for _, w := range strings.Fields(r.Value()) {
							_ = out.Emit(r.WithValue(w)) // ignores the error on purpose
						}
						return nil
					}
				}).To("a", serde.String, failingEncode, stream.Named("picky-sink"))
			},
			inputs: []in{rec("k1", "x", 1), rec("k2", "good bad good", 2), rec("k3", "z", 3)},
			want: map[string]strs{
				"a": {o("k1", "x", at(1)), o("k3", "z", at(3))},
			},
			errHas: []string{"picky-sink", "cannot encode bad"},
		},
		{
			name: "a record fed back through a topic fails downstream: only the failing hop is discarded",
			topology: func(b *stream.Builder) {
				fromIn(b).To("mid", serde.String, serde.String)
				stream.From(b, "mid", serde.String, serde.String).Process(failOn, stream.Named("checker")).To("a", serde.String, serde.String)
			},
			inputs: []in{rec("k1", "ok", 1), rec("k2", "fail", 2), rec("k3", "ok", 3)},
			want: map[string]strs{
				// The write to mid was committed by sub-topology 0 before
				// sub-topology 1 read it.
				"mid": {o("k1", "ok", at(1)), o("k2", "fail", at(2)), o("k3", "ok", at(3))},
				"a":   {o("k1", "ok", at(1)), o("k3", "ok", at(3))},
			},
			errHas:   []string{"checker", "value refused"},
			dlqTopic: "mid",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := stream.NewBuilder("shop")
			tt.topology(b)
			_, d := newDriver(t, b)
			pipe(t, d, tt.inputs...)
			got := map[string]strs{}
			for topic := range tt.want {
				got[topic] = readStrings(t, d, topic)
			}
			require.Equal(t, tt.want, got)
			failing := tt.inputs[1]
			topic := tt.dlqTopic
			if topic == "" {
				topic = "in"
			}
			requireDLQ(t, d, dlqWant{key: failing.key, value: failing.value, ts: failing.ts, topic: topic, offset: 1, errHas: tt.errHas})
		})
	}
}

func TestDLQSinkEncodeError(t *testing.T) {
	keyFails := serde.Func("no-empty-keys",
		func(k string) ([]byte, error) {
			if k == "" {
				return nil, errors.New("empty key")
			}
			return []byte(k), nil
		},
		func(b []byte) (string, error) { return string(b), nil })
	b := stream.NewBuilder("shop")
	fromIn(b).SelectKey(func(_, v string) string { return v }).To("out", keyFails, serde.String, stream.Named("by-value"))
	_, d := newDriver(t, b)
	pipe(t, d, rec("a", "x", 1), rec("b", "", 2).with("h", "1"), rec("c", "z", 3))
	require.Equal(t, strs{o("x", "x", at(1)), o("z", "z", at(3))}, readStrings(t, d, "out"))
	requireDLQ(t, d, dlqWant{key: "b", value: "", ts: at(2), headers: []streamtest.Header{hdr("h", "1")}, topic: "in", offset: 1,
		errHas: []string{"by-value", "key", "no-empty-keys encode string", "empty key"}})
}

func TestOnErrorSkip(t *testing.T) {
	b := stream.NewBuilder("shop", stream.WithErrorPolicy(stream.OnErrorSkip))
	stream.From(b, "in", serde.String, serde.JSON[Purchase]()).
		Process(func() stream.ProcessorFunc[string, Purchase, string, string] {
			return func(_ stream.ProcessorContext, r stream.Record[string, Purchase], out stream.Emitter[string, string]) error {
				if err := out.Emit(r.WithValue("before " + r.Value().ID)); err != nil {
					return err
				}
				switch r.Value().ID {
				case "fail":
					return errors.New("refused")
				case "panic":
					panic("boom")
				}
				return nil
			}
		}).
		To("out", serde.String, serde.String)
	topo, d := newDriver(t, b)
	require.Empty(t, topo.InternalTopics(), "no DLQ topic under OnErrorSkip")
	pipe(t, d,
		rec("a", `{"id":"ok-1"}`, 1),
		rec("b", `{"id":`, 2),
		rec("c", `{"id":"fail"}`, 3),
		rec("d", `{"id":"panic"}`, 4),
		rec("e", `{"id":"ok-2"}`, 5),
	)
	require.Equal(t, strs{o("a", "before ok-1", at(1)), o("e", "before ok-2", at(5))}, readStrings(t, d, "out"))
	require.Zero(t, d.DLQ().Len())
	require.Equal(t, topology.TaskStats{Processed: 5, Skipped: 3}, d.Stats())
}

func TestOnErrorFail(t *testing.T) {
	tests := []struct {
		name     string
		topology func(b *stream.Builder)
		// good returns a value that processes fine and maps to k.
		good   func(k string) string
		value  string
		node   string
		errHas []string
	}{
		{
			name: "processor error",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(failOn, stream.Named("checker")).To("out", serde.String, serde.String)
			},
			good:   func(k string) string { return k },
			value:  "fail",
			node:   "checker",
			errHas: []string{"value refused"},
		},
		{
			name: "processor panic",
			topology: func(b *stream.Builder) {
				fromIn(b).Process(failOn, stream.Named("checker")).To("out", serde.String, serde.String)
			},
			good:   func(k string) string { return k },
			value:  "panic",
			errHas: []string{"panicked", "processor exploded"},
		},
		{
			name: "decode error",
			topology: func(b *stream.Builder) {
				stream.From(b, "in", serde.String, serde.JSON[Purchase](), stream.Named("orders")).
					Map(func(k string, o Purchase) (string, string) { return k, o.ID }).
					To("out", serde.String, serde.String)
			},
			good:   func(k string) string { return `{"id":"` + k + `"}` },
			value:  "fail",
			node:   "orders",
			errHas: []string{"json decode stream_test.Purchase"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const partitions = 2
			b := stream.NewBuilder("shop", stream.WithErrorPolicy(stream.OnErrorFail))
			tt.topology(b)
			topo, d := newDriver(t, b, streamtest.WithPartitions("in", partitions))
			require.Empty(t, topo.InternalTopics())
			require.Equal(t, stream.OnErrorFail, topo.ErrorPolicy())

			// Two good records on the failing key's partition first, so the
			// failing offset is 2.
			pipe(t, d, rec("k", tt.good("k"), 1), rec("k", tt.good("k"), 2))
			err := pipeErr(d, rec("k", tt.value, 3))
			require.Error(t, err)
			var re *stream.RecordError
			require.ErrorAs(t, err, &re)
			p := kafkaPartition("in", "k", partitions)
			require.Equal(t, stream.Origin{Topic: "in", Partition: p, Offset: 2}, re.Origin)
			require.ErrorContains(t, err, fmt.Sprintf("in[%d]@2", p), "the message names topic, partition and offset")
			for _, s := range tt.errHas {
				require.ErrorContains(t, err, s)
			}
			if tt.node != "" {
				var ne *stream.NodeError
				require.ErrorAs(t, err, &ne)
				require.Equal(t, tt.node, ne.Node)
				require.ErrorContains(t, err, tt.node)
			}
			require.Equal(t, strs{o("k", "k", at(1)), o("k", "k", at(2))}, readStrings(t, d, "out"),
				"the failing record emits nothing")
			require.Zero(t, d.DLQ().Len())
		})
	}
}

func TestErrorPolicyString(t *testing.T) {
	for p, want := range map[stream.ErrorPolicy]string{
		stream.OnErrorDLQ: "dlq", stream.OnErrorSkip: "skip", stream.OnErrorFail: "fail", stream.ErrorPolicy(9): "ErrorPolicy(9)",
	} {
		require.Equal(t, want, p.String())
	}
}

// A damaged state database (state.CorruptionPanic) is no fault of the
// record being processed: it is not dead-lettered, the panic goes on, and
// the task's next open restores (state marks the directory).
func TestCorruptionPanicIsNotDeadLettered(t *testing.T) {
	damage := &state.CorruptionPanic{Dir: "db", Msg: "checksum mismatch"}
	b := stream.NewBuilder("shop")
	fromIn(b).MapValues(func(v string) string {
		if v == "" {
			panic(damage)
		}
		return v
	}).To("out", serde.String, serde.String)
	_, d := newDriver(t, b)
	var got any
	func() {
		defer func() { got = recover() }()
		pipe(t, d, rec("a", "x", 1), rec("b", "", 2))
	}()
	require.Same(t, damage, got)
}
