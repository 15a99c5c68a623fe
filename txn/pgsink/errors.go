package pgsink

import (
	"errors"
	"fmt"
	"strings"
)

// FencedError is a batch the database refused because this instance no
// longer owns one of its partitions: another instance was assigned the
// partition and bumped its epoch in the offsets table, or the table's next
// offset is past the batch's first record. Nothing of the batch was
// written. Run does not return it: the sink rejoins the group and resumes
// from the offsets table.
type FencedError struct {
	Topic     string
	Partition int32
	Epoch     int64 // the epoch this instance held
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("pgsink: fenced: %s[%d] no longer held at epoch %d (another instance took it over)", e.Topic, e.Partition, e.Epoch)
}

// IsFenced reports whether err is, or wraps, a *FencedError.
func IsFenced(err error) bool {
	_, ok := errors.AsType[*FencedError](err)
	return ok
}

// RecordError is a record whose key or value did not decode, returned by
// Run under OnErrorFail.
type RecordError struct {
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("pgsink: record %s[%d]@%d: %v", e.Topic, e.Partition, e.Offset,
		strings.TrimPrefix(e.Err.Error(), "pgsink: "))
}

// Unwrap returns the decode error.
func (e *RecordError) Unwrap() error { return e.Err }

// WriteError is a batch the write function failed, returned by Run when
// the failure is not transient (see Run): the batch's transaction was
// rolled back, its offsets are not advanced, and a restart writes the same
// batch again.
type WriteError struct {
	// Spans are the batch's partitions and offsets.
	Spans []Span
	Err   error
}

func (e *WriteError) Error() string {
	var b strings.Builder
	for i, s := range e.Spans {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s[%d]@%d..%d", s.Topic, s.Partition, s.From, s.Next-1)
	}
	return fmt.Sprintf("pgsink: write of batch %s: %v", b.String(), e.Err)
}

// Unwrap returns the write function's error.
func (e *WriteError) Unwrap() error { return e.Err }
