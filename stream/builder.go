package stream

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Builder collects the operators of one application's topology. Start with
// NewBuilder, add sources with From, chain operators on the returned
// streams, and finish with Build.
//
// A Builder is not safe for concurrent use. Mistakes made while building
// (a nil function, a bad name) are collected and reported together by Build.
type Builder struct {
	appID   string
	policy  ErrorPolicy
	nodes   []*node
	stores  []*storeSpec
	globals []*globalSpec
	errs    []error
}

// BuilderOption configures a Builder.
type BuilderOption interface{ applyBuilder(*Builder) }

type builderOpt func(*Builder)

func (f builderOpt) applyBuilder(b *Builder) { f(b) }

// WithErrorPolicy sets what happens to a record that fails to decode or
// whose processing returns an error. The default is OnErrorDLQ.
func WithErrorPolicy(p ErrorPolicy) BuilderOption {
	return builderOpt(func(b *Builder) { b.policy = p })
}

// NewBuilder starts a topology for the application appID. The id names the
// consumer group, prefixes the transactional id and every internal topic
// (`<app-id>-dlq`, ...), so it must be a valid Kafka topic name prefix.
func NewBuilder(appID string, opts ...BuilderOption) *Builder {
	b := &Builder{appID: appID, policy: OnErrorDLQ}
	for _, o := range opts {
		o.applyBuilder(b)
	}
	return b
}

// nodeOption is what every operator option does: set part of a node's
// configuration. The exported option interfaces below add a marker method
// each, so that an option compiles only where it means something.
type nodeOption interface{ applyNode(*nodeOpts) }

// Option configures an operator whose name is optional: a stateless one
// (Filter, Map, To, Merge, Split, ...), a stream-table or global-table
// join, GroupByKey, FromTable or FromGlobalTable. Named is the one Option.
type Option interface {
	nodeOption
	operatorOption()
}

// SourceOption configures stream.From: Named or WithTimestamp.
type SourceOption interface {
	nodeOption
	sourceOption()
}

// ProcessOption configures Process, the operator that runs user
// processors: Named or WithStores.
type ProcessOption interface {
	nodeOption
	processOption()
}

// WindowOption configures a windowed or session aggregation (Count,
// Aggregate or Reduce after WindowedBy or SessionWindowedBy): EmitOnClose.
type WindowOption interface {
	nodeOption
	windowOption()
}

type nodeOpts struct {
	name        string
	stores      []Store
	emitOnClose bool
	timestamp   func(*kgo.Record) (time.Time, error)
}

// nodeOptions turns the options a public operator took into the internal
// list its node is added with.
func nodeOptions[O nodeOption](opts []O) []nodeOption {
	out := make([]nodeOption, 0, len(opts))
	for _, o := range opts {
		out = append(out, o)
	}
	return out
}

// timestampOption is what WithTimestamp returns.
type timestampOption func(*kgo.Record) (time.Time, error)

func (f timestampOption) applyNode(o *nodeOpts) { o.timestamp = f }
func (timestampOption) sourceOption()           {}

// WithTimestamp sets how a source (stream.From) finds its records' event
// time: by default the Kafka record's timestamp. f reads the raw record,
// before any serde (a field of its value, a header), and must be
// deterministic; the time it returns is the records' timestamp
// downstream, and what the task's stream time, windows and dedup go by.
// An error routes the record through the error policy (the DLQ by
// default) and leaves stream time where it was.
func WithTimestamp(f func(rec *kgo.Record) (time.Time, error)) SourceOption {
	return timestampOption(f)
}

// NameOption is the option Named returns. It is an Option, a SourceOption
// and a ProcessOption: every operator whose name is optional accepts it.
type NameOption struct{ name string }

func (n NameOption) applyNode(o *nodeOpts) { o.name = n.name }
func (NameOption) operatorOption()         {}
func (NameOption) sourceOption()           {}
func (NameOption) processOption()          {}

// Named gives an operator whose name is optional an explicit one (the
// default is `<op>-<seq>`). Names appear in Describe, in errors and in DLQ
// headers. Operators that own a store or an internal topic take their
// name as a required first argument instead (see the package doc); a
// Process that declares stores must be Named, and a GroupByKey that
// repartitions.
func Named(name string) NameOption {
	return NameOption{name: name}
}

// From adds a source reading topic, decoding keys with keySerde and values
// with valueSerde. The stream's types are those of the serdes:
//
//	orders := stream.From(b, "orders", serde.String, serde.JSON[Order]())
//
// Each topic may be read by one source only.
func From[K, V any](b *Builder, topic string, keySerde serde.Serde[K], valueSerde serde.Serde[V], opts ...SourceOption) Stream[K, V] {
	n := b.add(kindSource, "source", nodeOptions(opts))
	n.topics = []string{topic}
	b.checkTopic(n, topic)
	if keySerde == nil || valueSerde == nil {
		b.errorf("source %s (topic %q) has no %s serde: pass one to stream.From", n.name, topic, whichNil(keySerde == nil, valueSerde == nil))
	}
	src := &sourceSpec[K, V]{ks: keySerde, vs: valueSerde}
	src.out.node = n
	n.raw = src
	return Stream[K, V]{b: b, out: &src.out}
}

func whichNil(key, value bool) string {
	switch {
	case key && value:
		return "key or value"
	case key:
		return "key"
	}
	return "value"
}

func (b *Builder) errorf(format string, args ...any) {
	b.errs = append(b.errs, fmt.Errorf("stream: "+format, args...))
}

var validTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// checkTopic records an error for a name Kafka would reject.
func (b *Builder) checkTopic(n *node, topic string) {
	if !validTopic.MatchString(topic) || topic == "." || topic == ".." {
		b.errorf("%s: invalid topic name %q: use 1 to 249 of [a-zA-Z0-9._-]", n.name, topic)
	}
}

// add registers a node. Default names are `<op>-<seq>`, Kafka Streams style.
func (b *Builder) add(kind nodeKind, op string, opts []nodeOption, parents ...*node) *node {
	var o nodeOpts
	for _, opt := range opts {
		opt.applyNode(&o)
	}
	n := &node{id: len(b.nodes), kind: kind, op: op, name: o.name, named: o.name != "", timestamp: o.timestamp}
	for _, st := range o.stores {
		n.stores = append(n.stores, st.spec())
		st.spec().users = append(st.spec().users, n)
	}
	if n.name == "" {
		n.name = fmt.Sprintf("%s-%04d", op, n.id)
	}
	n.rekeyed = keyChanging[op]
	for _, p := range parents {
		n.parents = append(n.parents, p)
		p.children = append(p.children, n)
		n.rekeyed = n.rekeyed || p.rekeyed
	}
	b.nodes = append(b.nodes, n)
	return n
}

// rawSource is the type-erased entry of a source: it decodes a Kafka record
// and pushes it into the typed graph of one task.
type rawSource interface {
	instantiateRaw(t *task) (rawSink, error)
}

type rawSink interface {
	pushRaw(rec *kgo.Record) error
}

type sourceSpec[K, V any] struct {
	ks  serde.Serde[K]
	vs  serde.Serde[V]
	out outlet[K, V]
}

func (s *sourceSpec[K, V]) instantiateRaw(t *task) (rawSink, error) {
	next, err := s.out.build(t)
	if err != nil {
		return nil, err
	}
	return &sourceNode[K, V]{t: t, name: s.out.node.name, ks: s.ks, vs: s.vs, next: next}, nil
}

type sourceNode[K, V any] struct {
	t    *task
	name string
	ks   serde.Serde[K]
	vs   serde.Serde[V]
	next sink[K, V]
}

func (s *sourceNode[K, V]) pushRaw(rec *kgo.Record) error {
	k, err := s.ks.Decode(rec.Key)
	if err != nil {
		return &NodeError{Node: s.name, Err: fmt.Errorf("key: %w", err)}
	}
	v, err := s.vs.Decode(rec.Value)
	if err != nil {
		return &NodeError{Node: s.name, Err: fmt.Errorf("value: %w", err)}
	}
	return s.next.push(Record[K, V]{
		key: k, value: v, ts: s.t.recordTime, headers: Headers{h: rec.Headers},
		origin: Origin{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset},
	})
}

var errNoSources = errors.New("stream: topology has no sources: add one with stream.From")

// withName is the internal option list of a stateful operator: its
// positional name, then opts.
func withName[O nodeOption](name string, opts []O) []nodeOption {
	return append([]nodeOption{Named(name)}, nodeOptions(opts)...)
}

// stateful applies the options of stateful operator op, whose name (its
// first argument) names what: an empty one is a Build error, and op
// stands in for it so that Build goes on to report the rest.
func (b *Builder) stateful(op, what string, opts []nodeOption) nodeOpts {
	var o nodeOpts
	for _, opt := range opts {
		opt.applyNode(&o)
	}
	if o.name == "" {
		b.errorf("%s needs a name (its first argument): it names %s", op, what)
		o.name = op
	}
	return o
}

// named is withName for an operator that takes no options.
func named(name string) []nodeOption { return []nodeOption{Named(name)} }
