package txn

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// FatalError is an error the worker cannot recover from by itself: Run
// returns it and the worker stops. Cause says what to fix.
type FatalError struct {
	Cause string
	Err   error
}

func (e *FatalError) Error() string { return fmt.Sprintf("txn: %s: %v", e.Cause, e.Err) }

// Unwrap returns the underlying error.
func (e *FatalError) Unwrap() error { return e.Err }

// IsFenced reports whether err means this worker's producer was fenced:
// another producer with the same transactional id started (a restart of
// this worker, which makes this process a zombie), or the broker aborted
// the transaction itself and bumped the epoch (transaction timeout,
// coordinator recovery). The worker treats it like an unknown outcome:
// it drops all pending work and re-creates its transactional session.
func IsFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.InvalidProducerIDMapping)
}

// classify returns a *FatalError for errors no retry can fix, and nil for
// errors the worker survives by re-creating its session.
func classify(err error) *FatalError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.FencedInstanceID):
		return &FatalError{Cause: "another live worker uses the same instance id (static group membership): give each worker its own --instance", Err: err}
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return &FatalError{Cause: "not authorized to use the transactional id: grant WRITE on it", Err: err}
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return &FatalError{Cause: "not authorized for the consumer group: grant READ on the group (the app id)", Err: err}
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return &FatalError{Cause: "not authorized for a topic: grant READ on sources, WRITE on sinks and internal topics", Err: err}
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return &FatalError{Cause: "not authorized on the cluster (idempotent/transactional produce needs IDEMPOTENT_WRITE)", Err: err}
	}
	return nil
}
