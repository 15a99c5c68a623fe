package txn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Validate names every invalid setting, each with what to set.
func TestConfigValidate(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}, Instance: "w1"}
	require.NoError(t, ok.Validate())

	bad := ok
	bad.Brokers = nil
	bad.StateFlushWrites = -1
	bad.CommitInterval, bad.TransactionTimeout = time.Minute, time.Second
	err := bad.Validate()
	require.ErrorContains(t, err, "no brokers")
	require.ErrorContains(t, err, "StateFlushWrites is -1")
	require.ErrorContains(t, err, "transaction timeout 1s is shorter than the commit interval 1m0s")
}
