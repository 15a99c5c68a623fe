package broker

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A transaction open when the broker was stopped cleanly, restored by the
// restart, and still open at a crash after it, is aborted when the broker
// starts after the crash: the last stable offset passes it at once, and
// when its producer restarts and commits, readers deliver the committed
// records and never the open ones. kfake alone restores nothing after the
// crash: the last stable offset stays stuck at the open transaction until
// the producer's next commit, which makes readers deliver the open
// transaction's records as committed.
func TestTxnOpenAtCleanStopAbortedAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name string
		fix  fixes
	}{
		{"corrected", allFixes},
		{"kfake alone", allFixes &^ fixRestored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			image, log, open := crashImageWithOpenTxn(ctx, t, true)
			_, addr := startConformance(t, Config{DataDir: image}, tc.fix)
			ends := listEnds(ctx, t, conformanceClient(t, addr), log.topic)
			if tc.fix == allFixes {
				require.Equal(t, ends.hwm, ends.lso, "the LSO passes the transaction open at the crash")
			} else {
				for p := range int32(2) {
					require.Less(t, ends.lso[p], ends.hwm[p], "kfake alone: partition %d: the LSO is stuck at the transaction open at the crash", p)
				}
			}

			crasher := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID(open.txnID))...)
			require.NoError(t, crasher.BeginTransaction())
			for p := range int32(2) {
				log.add(true, "crasher.after", produceOne(ctx, t, crasher, log.topic, p, conformanceValue("crasher.after.commit", int(p), 200)))
			}
			require.NoError(t, crasher.EndTransaction(ctx, kgo.TryCommit))
			log.end(ctx, t, conformanceClient(t, addr, singleBatches()...), 2)
			got := readCommittedLog(ctx, t, addr, log, fetchLimits{1 << 20, 1 << 20})
			if tc.fix == allFixes {
				require.Empty(t, logDiff(log.committed(), got))
				return
			}
			delivered := 0
			for _, rs := range got {
				for _, r := range rs {
					if strings.HasPrefix(r.value, "crasher.open.") {
						delivered++
					}
				}
			}
			require.Equal(t, 4, delivered, "kfake alone delivers the 4 records of the transaction open at the crash: %s", logDiff(log.committed(), got))
		})
	}
}
