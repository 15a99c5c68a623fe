package txn

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
)

// Validate names every invalid setting, each with what to set.
func TestConfigValidate(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}, Instance: "w1"}
	require.NoError(t, ok.Validate())

	for _, rf := range []int{-1, 0, 1, 3, math.MaxInt16} {
		good := ok
		good.ReplicationFactor = rf
		require.NoError(t, good.Validate(), rf)
	}

	bad := ok
	bad.Brokers = nil
	bad.StateFlushWrites = -1
	bad.MaxBatchRecords = -2
	bad.Lanes = -3
	bad.SessionTimeout = -time.Second
	bad.CommitInterval, bad.TransactionTimeout = time.Minute, time.Second
	bad.ReplicationFactor = -2
	err := bad.Validate()
	require.ErrorContains(t, err, "no brokers")
	require.ErrorContains(t, err, "StateFlushWrites is -1: it must be positive, or 0 for the default (runner: --state-flush-writes)")
	require.ErrorContains(t, err, "MaxBatchRecords is -2: it must be positive, or 0 for the default (runner: --max-batch-records)")
	require.ErrorContains(t, err, "Lanes is -3: it must be positive, or 0 for the default (runner: --lanes)")
	require.ErrorContains(t, err, "SessionTimeout is -1s: it must be positive, or 0 for the default (runner: --session-timeout)")
	require.ErrorContains(t, err, "ReplicationFactor is -2: it must be from 1 to 32767, or 0 or -1 for the brokers' default (runner: --replication-factor)")
	require.ErrorContains(t, err, "transaction timeout 1s is shorter than the commit interval 1m0s: a transaction would be aborted before it commits (runner: --transaction-timeout, --commit-interval)")

	bad = ok
	bad.ReplicationFactor = math.MaxInt16 + 1
	require.ErrorContains(t, bad.Validate(), "ReplicationFactor is 32768")
}

// WithDefaults fills in the zero fields, the transaction timeout from the
// session timeout, and leaves set ones, StateDir and ReplicationFactor
// alone.
func TestConfigWithDefaults(t *testing.T) {
	d := Config{Instance: "w1"}.WithDefaults()
	require.Equal(t, 100*time.Millisecond, d.CommitInterval)
	require.Equal(t, 20_000, d.MaxBatchRecords)
	require.Equal(t, state.DefaultFlushWrites, d.StateFlushWrites)
	require.Equal(t, min(runtime.GOMAXPROCS(0), 8), d.Lanes)
	require.Equal(t, 10*time.Second, d.SessionTimeout)
	require.Equal(t, 10*time.Second, d.TransactionTimeout)
	require.Equal(t, "", d.StateDir)
	require.Equal(t, 0, d.ReplicationFactor)
	require.NotNil(t, d.Logger)
	require.NotNil(t, d.Clock)

	d = Config{Instance: "w1", SessionTimeout: 30 * time.Second, MaxBatchRecords: 5, Lanes: 3}.WithDefaults()
	require.Equal(t, 30*time.Second, d.TransactionTimeout)
	require.Equal(t, 5, d.MaxBatchRecords)
	require.Equal(t, 3, d.Lanes)
	require.Equal(t, time.Minute, Config{TransactionTimeout: time.Minute}.WithDefaults().TransactionTimeout)
}
