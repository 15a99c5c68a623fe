package stream

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrorPolicy decides what happens to a record that fails: it could not be
// decoded, a sink could not encode an output, or an operator returned an
// error (or panicked). In every case the outputs the failing record had
// already produced are discarded first, so a record's effects are all or
// nothing.
type ErrorPolicy int

const (
	// OnErrorDLQ writes the failing input record, unchanged, to the topic
	// `<app-id>-dlq` inside the same transaction, with headers
	// sluice.error, sluice.topic, sluice.partition and sluice.offset, and
	// goes on. This is the default.
	OnErrorDLQ ErrorPolicy = iota
	// OnErrorSkip drops the failing record, counts it (TaskStats.Skipped)
	// and goes on.
	OnErrorSkip
	// OnErrorFail stops the task with a *RecordError naming the topic,
	// partition and offset; the runtime stops the worker.
	OnErrorFail
)

func (p ErrorPolicy) String() string {
	switch p {
	case OnErrorDLQ:
		return "dlq"
	case OnErrorSkip:
		return "skip"
	case OnErrorFail:
		return "fail"
	}
	return "ErrorPolicy(" + strconv.Itoa(int(p)) + ")"
}

// DLQ header names.
const (
	HeaderError     = "sluice.error"
	HeaderTopic     = "sluice.topic"
	HeaderPartition = "sluice.partition"
	HeaderOffset    = "sluice.offset"
	// HeaderNode and HeaderPunctuation name, on the DLQ record of a
	// failed punctuator (which has no input record, and so no
	// sluice.topic or sluice.offset), the processor's node and the
	// PunctuationType.
	HeaderNode        = "sluice.node"
	HeaderPunctuation = "sluice.punctuation"
	// HeaderTruncated is set on a DLQ record whose value was dropped
	// because the record did not fit the DLQ topic.
	HeaderTruncated = "sluice.truncated"
)

// NodeError is an error raised at one node of the topology: a decode error
// at a source, an encode error at a sink, or a processor's own error.
type NodeError struct {
	Node string
	Err  error
}

func (e *NodeError) Error() string { return fmt.Sprintf("stream: node %s: %v", e.Node, e.Err) }

// Unwrap returns the cause.
func (e *NodeError) Unwrap() error { return e.Err }

// RecordError is the error a task returns under OnErrorFail: which input
// record failed, and why.
type RecordError struct {
	Origin Origin
	Err    error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("stream: record %s[%d]@%d: %s", e.Origin.Topic, e.Origin.Partition, e.Origin.Offset,
		strings.TrimPrefix(e.Err.Error(), "stream: "))
}

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }

// UndeclaredStoreError is a processor resolving a store (KeyValueStore.In)
// that its Process node did not declare with WithStores. It is a
// programming error that every record would hit: Build reports it when the
// processor's Init resolves the store, and a task whose Process resolves it
// fails with a *RecordError wrapping it, whatever the ErrorPolicy, without
// sending the record to the DLQ.
type UndeclaredStoreError struct {
	Node      string // the Process node
	Processor string // the processor's Go type
	Store     string // the store's name
}

func (e *UndeclaredStoreError) Error() string {
	return fmt.Sprintf("stream: processor %s (node %s) uses store %q, which the node does not declare", e.Processor, e.Node, e.Store)
}

// PanicError is a panic recovered from an operator, turned into an error.
type PanicError struct {
	Value any
}

func (e *PanicError) Error() string { return fmt.Sprintf("stream: operator panicked: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// deadLetter builds the DLQ record for a failed input record: the input's
// own key, value, timestamp and headers, plus the sluice.* headers.
func deadLetter(topic string, rec *kgo.Record, err error) *kgo.Record {
	return &kgo.Record{
		Topic:     topic,
		Key:       rec.Key,
		Value:     rec.Value,
		Timestamp: rec.Timestamp,
		Headers: withExtra(rec.Headers,
			kgo.RecordHeader{Key: HeaderError, Value: []byte(err.Error())},
			kgo.RecordHeader{Key: HeaderTopic, Value: []byte(rec.Topic)},
			kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
			kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
		),
	}
}
