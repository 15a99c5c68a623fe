package broker

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A crash between kfake's write of a batch and of its index entry leaves
// the batch without an entry. The broker rebuilds the index before kfake
// loads it, so the transaction the crash left open is aborted whole and
// its records stay hidden from read_committed readers, then and after a
// later restart. kfake alone loads the batch as written outside any
// transaction and delivers it as committed.
func TestIndexShortOfItsSegmentRepaired(t *testing.T) {
	for _, tc := range []struct {
		name string
		fix  fixes
	}{
		{"corrected", allFixes},
		{"kfake alone", allFixes &^ fixIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			image, log := crashImageWithOpenTxnLast(ctx, t)
			dir := partitionDir(image, log.topic, 0)
			bases, err := segmentsIn(dir)
			require.NoError(t, err)
			idx := indexPath(dir, bases[len(bases)-1])
			info, err := os.Stat(idx)
			require.NoError(t, err)
			// The last batch's entry never made it.
			require.NoError(t, os.Truncate(idx, info.Size()-indexEntrySize))

			c, addr := startConformance(t, Config{DataDir: image}, tc.fix)
			after := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("after"))...)
			require.NoError(t, after.BeginTransaction())
			log.add(true, "after", produceOne(ctx, t, after, log.topic, 0, conformanceValue("after.commit", 0, 100)))
			require.NoError(t, after.EndTransaction(ctx, kgo.TryCommit))
			want := log.clone()
			want.end(ctx, t, conformanceClient(t, addr, singleBatches()...), 1)
			got := readCommittedLog(ctx, t, addr, want, fetchLimits{1 << 20, 1 << 20})
			if tc.fix != allFixes {
				require.NotEmpty(t, logDiff(want.committed(), got), "kfake alone delivers the open transaction's last record: index.go may no longer be needed")
				return
			}
			require.Empty(t, logDiff(want.committed(), got))
			require.Empty(t, logDiff(want.committed(), readCommittedKcat(ctx, t, kcatPath(t), addr, want.topic, fetchLimits{1000, 1000})))

			// A crash now replays the partition again: the entries
			// written since the restart are in their places.
			image2 := t.TempDir()
			copyDir(t, image, image2)
			c.Close()
			_, addr = startConformance(t, Config{DataDir: image2}, allFixes)
			require.Empty(t, logDiff(want.committed(), readCommittedLog(ctx, t, addr, want, fetchLimits{1, 1})))
		})
	}
}

// crashImageWithOpenTxnLast writes to topic "gap" (one partition) a
// committed transaction of producer "gapper", two records, each a batch
// of its own, then opens another with one record, and returns a copy of
// the data dir taken while it is open, and the log.
func crashImageWithOpenTxnLast(ctx context.Context, t *testing.T) (string, *txnLog) {
	t.Helper()
	dir, image := t.TempDir(), t.TempDir()
	c, addr := startConformance(t, Config{DataDir: dir}, allFixes)
	defer c.Close()
	log := &txnLog{topic: "gap"}
	createConformanceTopic(ctx, t, addr, log.topic, 1, nil)
	cl := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("gapper"))...)
	require.NoError(t, cl.BeginTransaction())
	for i := range 2 {
		log.add(true, "gapper.commit", produceOne(ctx, t, cl, log.topic, 0, conformanceValue("gapper.commit", i, 100)))
	}
	require.NoError(t, cl.EndTransaction(ctx, kgo.TryCommit))
	require.NoError(t, cl.BeginTransaction())
	log.add(false, "gapper.open", produceOne(ctx, t, cl, log.topic, 0, conformanceValue("gapper.open", 0, 100)))
	copyDir(t, dir, image)
	return image, log
}
