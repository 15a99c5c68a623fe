package outbox

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Errors Run returns.

// FencedError is returned by Run when another relay with the same name
// took over: it initialized the relay's transactional id (which aborts
// this relay's open transaction and makes the broker refuse its next
// one) and committed its own claim to the cursor. Nothing of the batch
// this relay had open was committed. The relay stops rather than take
// the name back: restart it only once the other one is gone.
type FencedError struct {
	Name string
	// Owner is the session that took over, as its cursor record names
	// it; empty when the broker refused this relay's transaction before
	// the new owner had written a cursor.
	Owner string
	Err   error
}

func (e *FencedError) Error() string {
	s := fmt.Sprintf("outbox: fenced: another relay named %q took over", e.Name)
	if e.Owner != "" {
		s += " (its session " + e.Owner + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the broker's error, if any.
func (e *FencedError) Unwrap() error { return e.Err }

// IsFenced reports whether err is, or wraps, a *FencedError.
func IsFenced(err error) bool {
	_, ok := errors.AsType[*FencedError](err)
	return ok
}

// RowError is an outbox row the relay cannot produce: it has no topic
// (and Config.Topic is empty), or the broker refuses its record for good
// (an unknown topic, a record too large). Run returns it, after aborting
// the Kafka transaction: the relay cannot skip a row without breaking
// the guarantee. Fix the row (or the topic, or the broker's limits) and
// restart the relay; it resumes from its cursor, which is before the
// row.
type RowError struct {
	Table string
	Xid   uint64
	Seq   int64
	Topic string
	Err   error
}

func (e *RowError) Error() string {
	return fmt.Sprintf("outbox: row (xid %d, seq %d) of %s for topic %q: %v", e.Xid, e.Seq, e.Table, e.Topic, e.Err)
}

// Unwrap returns the cause.
func (e *RowError) Unwrap() error { return e.Err }

// KeyOrderError is returned by Table.Write with KeyOrder when a
// transaction with a higher id than the writing one has already written
// a message with the same topic and key: the message would be relayed
// before that one although it commits after it. Roll the transaction
// back and run it again; it then gets a higher id.
type KeyOrderError struct {
	Table string
	Topic string
	Key   []byte
}

func (e *KeyOrderError) Error() string {
	return fmt.Sprintf("outbox: key %q of topic %q in %s: a younger transaction already wrote this key; roll back and retry the transaction",
		e.Key, e.Topic, e.Table)
}

// rowFatal reports whether a produce error is the record's own fault and
// will not go away on a retry.
func rowFatal(err error) bool {
	for _, e := range []error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
		kerr.UnknownTopicOrPartition, kerr.InvalidTopicException, kerr.TopicAuthorizationFailed,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
