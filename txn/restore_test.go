package txn

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/txn/topology"
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
