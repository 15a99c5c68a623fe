package txn

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
)

// needsRestore is a stateful task with a changelog to replay; any other
// method panics (restore must refuse before it uses one).
type needsRestore struct{ topology.StatefulTask }

func (needsRestore) RestoreFrom() map[string]int64 { return map[string]int64{"c": -2} }

// A restore while a transaction is open is refused: it could outlast the
// transaction timeout (tasks are prepared before Begin).
func TestRestoreRefusedWhileATransactionIsOpen(t *testing.T) {
	w := &Worker{}
	w.txnOpen.Store(true)
	err := w.restore(context.Background(), topology.TaskID{Partition: 3}, needsRestore{}, nil)
	var fe *FatalError
	require.ErrorAs(t, err, &fe)
	require.ErrorContains(t, err, "task 0_3 restored while a transaction is open")
}

// A source topic that is also a table's changelog is restored up to the
// group's committed offset, where processing resumes, not to its end: the
// task reads the records after it again, and a table restored past them
// would go back to their older values. A topic with no commit yet is not
// replayed at all (processing starts at its start). A changelog of its
// own is restored to its end.
func TestRestoreSpansStopASourceTableAtTheCommit(t *testing.T) {
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := []string{addr}
	require.NoError(t, broker.CreateTopics(ctx, brokers, 1, "customers", "app-store-changelog"))
	require.NoError(t, txntest.Produce(ctx, brokers, "customers", 0, 5, 5, 10))
	require.NoError(t, txntest.Produce(ctx, brokers, "app-store-changelog", 0, 4, 4, 10))
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)

	from := map[string]int64{"customers": 1, "app-store-changelog": 0}
	spans, next, err := restoreSpans(ctx, adm, 0, from, nil, map[string]int64{"customers": 3})
	require.NoError(t, err)
	require.Equal(t, restoreSpan{restore: 1, restoreEnd: 3}, spans["customers"], "up to the commit")
	require.Equal(t, int64(3), next["customers"])
	require.Equal(t, restoreSpan{restore: 0, restoreEnd: 4}, spans["app-store-changelog"], "a changelog of its own: to its end")

	spans, next, err = restoreSpans(ctx, adm, 0, from, nil, map[string]int64{"customers": -1})
	require.NoError(t, err)
	require.NotContains(t, spans, "customers", "no commit: nothing to replay")
	require.Equal(t, int64(0), next["customers"])
}
