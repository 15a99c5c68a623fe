package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A transaction whose commit a crash of the broker cut is committed whole
// after the restart: in the partition whose marker the crash prevented,
// and with the offsets whose persisting it prevented. One whose commit
// kfake had not begun (no marker anywhere) stays aborted, offsets and
// all. kfake alone comes back with the transaction torn: committed in one
// partition, aborted in the other, its offsets lost.
func TestTornCommitCompletedOnRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		fix  fixes
		// cut are the partitions whose commit marker the crash image
		// loses.
		cut []int32
		// committed: the transaction is visible in both partitions and
		// its offsets are committed (else in neither, without offsets).
		committed bool
	}{
		{"corrected", allFixes, []int32{1}, true},
		{"not begun", allFixes, []int32{0, 1}, false},
		{"kfake alone", allFixes &^ fixTornCommit, []int32{1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			image, log, offsets := crashImageAfterCommit(ctx, t)
			for _, p := range tc.cut {
				cutLastBatch(t, partitionDir(image, log.topic, p))
			}
			// The offsets were not persisted either.
			require.NoError(t, os.Remove(filepath.Join(image, "groups.log")))

			_, addr := startConformance(t, Config{DataDir: image}, tc.fix)
			admin := kadm.NewClient(conformanceClient(t, addr))
			want := log.clone()
			if !tc.committed {
				for i := range want.records {
					if want.records[i].txn == "torn" {
						want.records[i].visible = false
					}
				}
			}
			want.end(ctx, t, conformanceClient(t, addr, singleBatches()...), 2)
			for _, lim := range []fetchLimits{{1, 1}, {1 << 20, 1 << 20}} {
				got := readCommittedLog(ctx, t, addr, want, lim)
				if tc.name == "kfake alone" {
					// Torn: partition 0 delivers the transaction,
					// partition 1 does not.
					require.Len(t, got[0], 2, "%v: partition 0: the record and the end", lim)
					require.Len(t, got[1], 1, "%v: partition 1: only the end", lim)
					continue
				}
				require.Empty(t, logDiff(want.committed(), got), "%v", lim)
				// librdkafka reads the marker the broker wrote as
				// kfake's own.
				require.Empty(t, logDiff(want.committed(), readCommittedKcat(ctx, t, kcatPath(t), addr, want.topic, fetchLimits{1000, max(lim.partition, 1)})), "kcat %v", lim)
			}

			fetched, err := admin.FetchOffsets(ctx, "torn-group")
			if !tc.committed && errors.Is(err, kerr.GroupIDNotFound) {
				return // kfake: no offsets at all
			}
			require.NoError(t, err)
			for p, at := range offsets {
				o, ok := fetched.Lookup("torn-in", p)
				if tc.committed {
					require.True(t, ok, "partition %d: committed offset", p)
					require.Equal(t, at, o.At, "partition %d", p)
				} else {
					require.False(t, ok && o.At >= 0, "partition %d: no offset, got %+v", p, o)
				}
			}
		})
	}
}

// After the commit, the next request the broker handles empties
// committing.json: a crash then has nothing to complete, and a commit
// logged long ago cannot move a group's offsets back to it (after a
// reset, say).
func TestCommitLogEmptiedByTheNextRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	dir := t.TempDir()
	_, addr := startConformance(t, Config{DataDir: dir}, allFixes)
	createConformanceTopic(ctx, t, addr, "logged", 1, nil)
	cl := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("logged"))...)
	require.NoError(t, cl.BeginTransaction())
	produceOne(ctx, t, cl, "logged", 0, "v")
	require.NoError(t, cl.EndTransaction(ctx, kgo.TryCommit))
	intent, err := readIntent(dir)
	require.NoError(t, err)
	require.NotNil(t, intent, "the commit is logged")
	_, err = kadm.NewClient(conformanceClient(t, addr)).ListTopics(ctx)
	require.NoError(t, err)
	intent, err = readIntent(dir)
	require.NoError(t, err)
	require.Nil(t, intent, "emptied by the next request")
}

// crashImageAfterCommit writes to topic "torn" (two partitions) of a
// broker with a data dir one record per partition in a transaction of
// producer "torn", which also commits offsets of group "torn-group" on
// topic "torn-in", and commits it. It returns a copy of the data dir
// taken right after the commit, before any other request (what a kill -9
// after the commit leaves, kfake writing through), the log, and the
// offsets committed.
func crashImageAfterCommit(ctx context.Context, t *testing.T) (string, *txnLog, map[int32]int64) {
	t.Helper()
	dir, image := t.TempDir(), t.TempDir()
	c, addr := startConformance(t, Config{DataDir: dir}, allFixes)
	defer c.Close()
	log := &txnLog{topic: "torn"}
	createConformanceTopic(ctx, t, addr, log.topic, 2, nil)
	createConformanceTopic(ctx, t, addr, "torn-in", 2, nil)
	plain := conformanceClient(t, addr, singleBatches()...)
	for p := range int32(2) {
		for i := range 10 {
			produceOne(ctx, t, plain, "torn-in", p, conformanceValue("in", i, 20))
		}
	}
	cl := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("torn"))...)
	require.NoError(t, cl.BeginTransaction())
	for p := range int32(2) {
		log.add(true, "torn", produceOne(ctx, t, cl, log.topic, p, conformanceValue("torn", int(p), 100)))
	}
	pid, epoch, err := cl.ProducerID(ctx)
	require.NoError(t, err)
	txn := rawTxn{id: "torn", pid: pid, epoch: epoch}
	offsets := map[int32]int64{0: 4, 1: 7}
	require.NoError(t, addOffsetsRaw(ctx, cl, txn, "torn-group"))
	for p, at := range offsets {
		require.NoError(t, txnOffsetCommitAs(ctx, cl, txn, "torn-group", "torn-in", p, at, groupIdentity{generation: -1}))
	}
	require.NoError(t, cl.EndTransaction(ctx, kgo.TryCommit))
	copyDir(t, dir, image)
	intent, err := readIntent(image)
	require.NoError(t, err)
	require.NotNil(t, intent, "the image holds the commit's log: no request came after it")
	require.Equal(t, pid, intent.ProducerID)
	require.Len(t, intent.Offsets, 2)
	return image, log, offsets
}

// partitionDir returns the directory of partition p of topic in kfake's
// data dir.
func partitionDir(dataDir, topic string, p int32) string {
	return filepath.Join(dataDir, "partitions", fmt.Sprintf("%s-%d", url.PathEscape(topic), p))
}

// cutLastBatch removes the last batch of the last segment in partition
// directory dir, and its index entry.
func cutLastBatch(t *testing.T, dir string) {
	t.Helper()
	bases, err := segmentsIn(dir)
	require.NoError(t, err)
	require.NotEmpty(t, bases)
	base := bases[len(bases)-1]
	batches, _, err := readSegment(segmentPath(dir, base))
	require.NoError(t, err)
	require.NotEmpty(t, batches)
	require.Equal(t, controlCommit, batches[len(batches)-1].control, "the last batch is the commit marker")
	var size int64
	for _, b := range batches[:len(batches)-1] {
		size += b.size
	}
	require.NoError(t, os.Truncate(segmentPath(dir, base), size))
	require.NoError(t, os.Truncate(indexPath(dir, base), int64(15*(len(batches)-1))))
}

// The offsets of a torn commit meet the group's own in kfake's groups.log
// before kfake loads it: one behind is moved forward, one ahead is never
// moved back, and a torn entry at the end of the log (which would hide
// all written after it from kfake) is cut off first. kfake reads the
// entries written as its own.
func TestTornOffsetsMeetTheGroupLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	image, log, offsets := crashImageAfterCommit(ctx, t)
	cutLastBatch(t, partitionDir(image, log.topic, 1))
	require.Equal(t, map[int32]int64{0: 4, 1: 7}, offsets)

	// The group log as a crash left it: partition 0 committed behind the
	// transaction's offset, partition 1 ahead of it (a later commit), and
	// the start of an entry the crash cut.
	var groupsLog []byte
	for p, at := range map[int32]int64{0: 2, 1: 9} {
		data, err := json.Marshal(groupLogEntry{Type: "commit", Group: "torn-group", Topic: "torn-in", Part: p, Offset: at})
		require.NoError(t, err)
		groupsLog = appendGroupsLogEntry(groupsLog, data)
	}
	torn := appendGroupsLogEntry(nil, []byte(`{"type":"commit","g":"torn-group","t":"torn-in","p":0,"o":1}`))
	groupsLog = append(groupsLog, torn[:len(torn)-5]...)
	require.NoError(t, os.WriteFile(filepath.Join(image, groupsLogFile), groupsLog, 0o644))

	_, addr := startConformance(t, Config{DataDir: image}, allFixes)
	fetched, err := kadm.NewClient(conformanceClient(t, addr)).FetchOffsets(ctx, "torn-group")
	require.NoError(t, err)
	for p, want := range map[int32]int64{0: 4, 1: 9} {
		o, ok := fetched.Lookup("torn-in", p)
		require.True(t, ok, "partition %d: committed offset", p)
		require.Equal(t, want, o.At, "partition %d", p)
	}
	committed, valid, err := readGroupOffsets(image)
	require.NoError(t, err)
	require.Equal(t, map[groupOffsetKey]int64{{"torn-group", "torn-in", 0}: 4, {"torn-group", "torn-in", 1}: 9}, committed)
	info, err := os.Stat(filepath.Join(image, groupsLogFile))
	require.NoError(t, err)
	require.Equal(t, info.Size(), valid, "no torn entry left")
}
