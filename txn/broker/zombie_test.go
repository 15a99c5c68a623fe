package broker

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A franz-go producer fenced by another with its transactional id, whose
// transaction had records, stays fenced when it aborts: the abort fails
// with PRODUCER_FENCED, it commits nothing more, and its successor
// commits. kfake alone answers the abort with success and the successor's
// epoch: the fenced producer then commits a transaction, and the
// successor's next produce is refused.
func TestFencedProducerStaysFencedWhenItAborts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fix     fixes
		unfence bool // the zombie commits again, and fences its successor
	}{
		{"corrected", allFixes, false},
		{"kfake alone", allFixes &^ fixZombieEnd, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			_, addr := startConformance(t, Config{}, tc.fix)
			const topic = "t"
			createConformanceTopic(ctx, t, addr, topic, 1, nil)
			opts := append(singleBatches(), kgo.TransactionalID("worker"))
			zombie := conformanceClient(t, addr, opts...)
			require.NoError(t, zombie.BeginTransaction())
			produceOne(ctx, t, zombie, topic, 0, "zombie-open")
			successor := conformanceClient(t, addr, opts...)
			_, _, err := successor.ProducerID(ctx) // InitProducerID: fences the zombie
			require.NoError(t, err)

			err = zombie.EndTransaction(ctx, kgo.TryAbort)
			if !tc.unfence {
				require.ErrorIs(t, err, kerr.ProducerFenced, "the fenced producer's abort")
			} else {
				require.NoError(t, err, "kfake alone: the fenced producer's abort")
			}
			committed := func() error {
				if err := zombie.BeginTransaction(); err != nil {
					return err
				}
				r := &kgo.Record{Topic: topic, Value: []byte("zombie-again")}
				if err := zombie.ProduceSync(ctx, r).FirstErr(); err != nil {
					return err
				}
				return zombie.EndTransaction(ctx, kgo.TryCommit)
			}()
			if !tc.unfence {
				require.Error(t, committed, "the fenced producer commits again")
			} else {
				require.NoError(t, committed, "kfake alone: the fenced producer commits again")
			}

			require.NoError(t, successor.BeginTransaction())
			err = successor.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("successor")}).FirstErr()
			if tc.unfence {
				require.True(t, isFencedErr(err), "kfake alone: the successor's produce after the zombie's commit: %v", err)
				return
			}
			require.NoError(t, err)
			require.NoError(t, successor.EndTransaction(ctx, kgo.TryCommit))
		})
	}
}
