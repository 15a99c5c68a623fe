package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestConformanceTxnOffsetCommitFencedByGeneration: Kafka fences a
// transactional offset commit of a consumer that is no longer the
// partition's owner (KIP-447): a TxnOffsetCommit naming a stale
// generation gets ILLEGAL_GENERATION, one naming an unknown member
// UNKNOWN_MEMBER_ID, one naming a static member's instance id with
// another member id FENCED_INSTANCE_ID; and the offsets it carried are
// never committed, even when the transaction commits.
//
// A classic group "gen" with one static member, joined with raw requests
// and rejoined with new metadata, so that its first generation is stale.
// One transaction commits offset 5 of partition 0 with the current
// generation; the next sends offset 9 for partition 0 with each stale
// identity and offset 3 for partition 1 with the current one, and
// commits: partition 0 stays at 5, partition 1 moves to 3.
func TestConformanceTxnOffsetCommitFencedByGeneration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	_, addr := startConformance(t, Config{}, allFixes)
	const group, topic = "gen", "gen"
	createConformanceTopic(ctx, t, addr, topic, 2, nil)
	cl := conformanceClient(t, addr)
	instance := "worker-1"
	member, stale := joinClassicGroup(ctx, t, cl, group, "", &instance, topic)
	member2, current := joinClassicGroup(ctx, t, cl, group, member, &instance, topic, "more")
	require.Equal(t, member, member2, "a rejoin keeps the member id")
	require.Greater(t, current, stale, "a rejoin with new metadata starts a generation")

	owner := groupIdentity{member: member, generation: current, instance: &instance}
	txn := initRawTxn(ctx, t, cl, "gen-txn", 60_000)
	require.NoError(t, txnOffsetCommitAs(ctx, cl, txn, group, topic, 0, 5, owner))
	txn = endRawTxn(ctx, t, cl, txn, true)

	for _, zombie := range []struct {
		name string
		id   groupIdentity
		want *kerr.Error
	}{
		{"a stale generation", groupIdentity{member, stale, &instance}, kerr.IllegalGeneration},
		{"an unknown member", groupIdentity{"zombie-member", current, nil}, kerr.UnknownMemberID},
		{"the instance id of another member", groupIdentity{"zombie-member", current, &instance}, kerr.FencedInstanceID},
	} {
		err := txnOffsetCommitAs(ctx, cl, txn, group, topic, 0, 9, zombie.id)
		require.ErrorIs(t, err, zombie.want, "TxnOffsetCommit with %s", zombie.name)
	}
	require.NoError(t, txnOffsetCommitAs(ctx, cl, txn, group, topic, 1, 3, owner))
	endRawTxn(ctx, t, cl, txn, true)

	got := fetchGroupOffsets(ctx, t, cl, group, true, topicPartitions{topic: {0, 1}})
	require.Equal(t, map[string]map[int32]fetchedOffset{topic: {0: {at: 5}, 1: {at: 3}}}, got,
		"the fenced commits did not move partition 0; the owner's moved partition 1")
}

// TestConformanceZombieProducerIsFenced: Kafka fences a producer once
// another starts with its transactional id (InitProducerID bumps the
// epoch): the transaction it had open is aborted, with abort markers, so
// read_committed readers never see its records and the last stable
// offset (LSO) passes them; every later request of the old producer is
// refused with PRODUCER_FENCED or INVALID_PRODUCER_EPOCH, including an
// EndTxn that would abort (it cannot pass for a retry of the abort the
// fencing did); and its successor's transactions commit.
//
// The zombie, a franz-go producer, has records open in two partitions;
// its successor, another with the same transactional id, loads its
// producer id. Then the zombie's AddPartitionsToTxn, AddOffsetsToTxn,
// TxnOffsetCommit and EndTxn (commit, then abort) are sent with its old
// epoch, its franz-go client produces and ends its transaction, the
// successor commits records in both partitions, and readers read.
//
// kfake alone answers the zombie's EndTxn commit with INVALID_TXN_STATE and
// its EndTxn abort with success and the successor's epoch (zombie.go).
func TestConformanceZombieProducerIsFenced(t *testing.T) {
	for _, tc := range []struct {
		name string
		fix  fixes
	}{
		{"corrected", allFixes},
		{"kfake alone", allFixes &^ fixZombieEnd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			_, addr := startConformance(t, Config{}, tc.fix)
			const topic, txnID = "zombie", "z"
			createConformanceTopic(ctx, t, addr, topic, 2, nil)
			admin := conformanceClient(t, addr)
			log := &txnLog{topic: topic}

			zombie := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID(txnID))...)
			require.NoError(t, zombie.BeginTransaction())
			var open []*kgo.Record
			for p := range int32(2) {
				open = append(open, produceOne(ctx, t, zombie, topic, p, conformanceValue("zombie.open.abort", int(p), 200)))
			}
			log.add(false, "zombie.open", open...)
			pid, epoch, err := zombie.ProducerID(ctx)
			require.NoError(t, err)
			old := rawTxn{id: txnID, pid: pid, epoch: epoch}

			successor := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID(txnID))...)
			pid2, epoch2, err := successor.ProducerID(ctx)
			require.NoError(t, err)
			require.Equal(t, pid, pid2, "the successor has the zombie's producer id")
			require.Greater(t, epoch2, epoch, "the successor has a later epoch")
			ends := listEnds(ctx, t, admin, topic)
			require.Equal(t, ends.hwm, ends.lso, "the LSO passes the zombie's aborted transaction")
			topicID := topicIDOf(ctx, t, admin, topic)
			for _, r := range open {
				_, batches := fetchOnce(ctx, t, admin, topic, topicID, r.Partition, r.Offset, isolationReadUncommitted, 1<<20)
				require.True(t, slices.ContainsFunc(batches, func(b kmsg.RecordBatch) bool { return isMarker(b, pid, false) }),
					"partition %d: an abort marker follows the zombie's records", r.Partition)
			}

			answers := map[string]error{
				"AddPartitionsToTxn": addPartitionsRaw(ctx, admin, old, topic, 0),
				"AddOffsetsToTxn":    addOffsetsRaw(ctx, admin, old, "zombie-group"),
				"TxnOffsetCommit":    txnOffsetCommitAs(ctx, admin, old, "zombie-group", topic, 0, 1, groupIdentity{generation: -1}),
			}
			for _, commit := range []bool{true, false} {
				name := fmt.Sprintf("EndTxn(commit=%v)", commit)
				var next rawTxn
				next, answers[name] = endRawTxnErr(ctx, admin, old, commit)
				if answers[name] == nil {
					t.Logf("%s of the zombie succeeded and handed it producer %d epoch %d (the successor's: %d, %d)", name, next.pid, next.epoch, pid2, epoch2)
				}
			}
			for name, err := range answers {
				if tc.fix == allFixes || name != "EndTxn(commit=false)" && name != "EndTxn(commit=true)" {
					require.True(t, isFencedErr(err), "the zombie's %s: %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", name, err)
				}
			}
			if tc.fix != allFixes {
				require.ErrorIs(t, answers["EndTxn(commit=true)"], kerr.InvalidTxnState, "kfake alone")
				require.NoError(t, answers["EndTxn(commit=false)"], "kfake alone takes the zombie's abort for a retry of the abort the fencing did")
				return
			}

			late := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(conformanceValue("zombie.late.abort", 0, 200))}
			err = zombie.ProduceSync(ctx, late).FirstErr()
			require.True(t, isFencedErr(err), "the zombie's produce: %v", err)
			require.Error(t, zombie.EndTransaction(ctx, kgo.TryCommit), "the zombie's commit")

			require.NoError(t, successor.BeginTransaction())
			var after []*kgo.Record
			for p := range int32(2) {
				after = append(after, produceOne(ctx, t, successor, topic, p, conformanceValue("successor.commit", int(p), 200)))
			}
			require.NoError(t, successor.EndTransaction(ctx, kgo.TryCommit), "the successor commits")
			log.add(true, "successor", after...)
			log.end(ctx, t, conformanceClient(t, addr, singleBatches()...), 2)
			for _, lim := range []fetchLimits{{1, 1}, {1 << 20, 1 << 20}} {
				require.Empty(t, logDiff(log.committed(), readCommittedLog(ctx, t, addr, log, lim)), "read with %v", lim)
			}
		})
	}
}

// TestConformanceRequireStableOffsetFetch: with offsets of a consumer
// group pending in an open transaction, Kafka answers an offset fetch that
// requires stable offsets (KIP-447, what a consumer sends when it is
// assigned partitions) with UNSTABLE_OFFSET_COMMIT for those partitions
// of that group only, and the committed offset for the others; once the
// transaction commits, the new offsets; once it aborts (by EndTxn or by
// its timeout), the old ones. An offset fetch that does not require
// stable offsets gets the committed offset at once.
// (TestStableOffsetFetchIsPerPartition covers one transaction, one
// partition, and an abort by re-initialization.)
//
// Groups g1 and g2 over topics sa and sb: g1 has committed 1 for sa/0,
// sa/1 and sb/0, none for sb/1; g2 1 for sa/0. Transaction x holds g1's
// sa/0 at 5 and y its sb/1 at 7, both open together, where sb/0 has the
// partition number of sa/0. x commits, y aborts; then z, whose timeout is
// 2 s, holds g1's sa/1 at 9 until the broker aborts it. Each partition is
// fetched on its own, then the four in one request, as a consumer does.
func TestConformanceRequireStableOffsetFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	_, addr := startConformance(t, Config{}, allFixes)
	cl := conformanceClient(t, addr)
	for _, topic := range []string{"sa", "sb"} {
		createConformanceTopic(ctx, t, addr, topic, 2, nil)
	}
	adm := kadm.NewClient(cl)
	commit := func(group string, offsets ...kadm.Offset) {
		var os kadm.Offsets
		for _, o := range offsets {
			o.LeaderEpoch = -1
			os.Add(o)
		}
		resps, err := adm.CommitOffsets(ctx, group, os)
		require.NoError(t, err)
		require.NoError(t, resps.Error())
	}
	commit("g1", kadm.Offset{Topic: "sa", Partition: 0, At: 1}, kadm.Offset{Topic: "sa", Partition: 1, At: 1}, kadm.Offset{Topic: "sb", Partition: 0, At: 1})
	commit("g2", kadm.Offset{Topic: "sa", Partition: 0, At: 1})
	all := topicPartitions{"sa": {0, 1}, "sb": {0, 1}}
	unstable := fetchedOffset{err: kerr.UnstableOffsetCommit}
	none := fetchedOffset{at: -1}

	nobody := groupIdentity{generation: -1}
	x := initRawTxn(ctx, t, cl, "x", 60_000)
	require.NoError(t, txnOffsetCommitAs(ctx, cl, x, "g1", "sa", 0, 5, nobody))
	y := initRawTxn(ctx, t, cl, "y", 60_000)
	require.NoError(t, txnOffsetCommitAs(ctx, cl, y, "g1", "sb", 1, 7, nobody))

	want := map[string]map[int32]fetchedOffset{"sa": {0: unstable, 1: {at: 1}}, "sb": {0: {at: 1}, 1: unstable}}
	require.Equal(t, want, fetchEachOffset(ctx, t, cl, "g1", true, all), "g1, stable, x and y open")
	// A known departure (stable.go): a require-stable fetch that asks for
	// a pending partition is refused for every partition it asks for,
	// where Kafka refuses only the pending ones. franz-go and the Java
	// client retry the whole fetch when any partition is unstable, so it
	// costs them nothing.
	require.Equal(t, map[string]map[int32]fetchedOffset{"sa": {0: unstable, 1: unstable}, "sb": {0: unstable, 1: unstable}},
		fetchGroupOffsets(ctx, t, cl, "g1", true, all), "g1, stable, in one request, x and y open")
	require.Equal(t, map[string]map[int32]fetchedOffset{"sa": {0: {at: 1}, 1: {at: 1}}, "sb": {0: {at: 1}, 1: none}},
		fetchEachOffset(ctx, t, cl, "g1", false, all), "g1, not requiring stable offsets")
	require.Equal(t, map[string]map[int32]fetchedOffset{"sa": {0: {at: 1}, 1: none}, "sb": {0: none, 1: none}},
		fetchEachOffset(ctx, t, cl, "g2", true, all), "g2, stable: nothing of it is pending")

	endRawTxn(ctx, t, cl, x, true)
	want["sa"][0] = fetchedOffset{at: 5}
	require.Equal(t, want, fetchEachOffset(ctx, t, cl, "g1", true, all), "g1, stable, x committed, y open")
	endRawTxn(ctx, t, cl, y, false)
	want["sb"][1] = none
	require.Equal(t, want, fetchEachOffset(ctx, t, cl, "g1", true, all), "g1, stable, y aborted")
	require.Equal(t, want, fetchGroupOffsets(ctx, t, cl, "g1", true, all), "g1, stable, in one request, nothing pending")

	z := initRawTxn(ctx, t, cl, "z", 2000)
	require.NoError(t, txnOffsetCommitAs(ctx, cl, z, "g1", "sa", 1, 9, nobody))
	want["sa"][1] = unstable
	require.Equal(t, want, fetchEachOffset(ctx, t, cl, "g1", true, all), "g1, stable, z open")
	want["sa"][1] = fetchedOffset{at: 1}
	waitFor(ctx, t, "z's transaction timed out and g1's sa/1 is stable at 1 again", func() bool {
		return fetchEachOffset(ctx, t, cl, "g1", true, topicPartitions{"sa": {1}})["sa"][1] == want["sa"][1]
	})
	require.Equal(t, want, fetchEachOffset(ctx, t, cl, "g1", true, all), "g1, stable, z timed out")
}

// TestConformanceTransactionTimeoutAborts: Kafka aborts a transaction
// left open past its timeout, with abort markers: the last stable offset
// (LSO) moves past it, read_committed readers never see its records, and
// the producer is fenced (its epoch bumped): its next produce is refused
// with INVALID_PRODUCER_EPOCH or PRODUCER_FENCED, and a commit it sends
// late does not succeed.
//
// Producers "slow" and "late", with 2 s timeouts, each open a transaction
// in both partitions, followed by another producer's committed records.
// Once the LSO reaches the high watermark (waited on, within the test's
// deadline), slow produces again and late commits.
func TestConformanceTransactionTimeoutAborts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	_, addr := startConformance(t, Config{}, allFixes)
	const topic = "timeout"
	createConformanceTopic(ctx, t, addr, topic, 2, nil)
	admin := conformanceClient(t, addr)
	log := &txnLog{topic: topic}
	producers := map[string]*kgo.Client{}
	epochs := map[string]int16{}
	for _, name := range []string{"slow", "late"} {
		cl := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID(name), kgo.TransactionTimeout(2*time.Second))...)
		require.NoError(t, cl.BeginTransaction())
		var rs []*kgo.Record
		for p := range int32(2) {
			rs = append(rs, produceOne(ctx, t, cl, topic, p, conformanceValue(name+".timeout", int(p), 200)))
		}
		log.add(false, name, rs...)
		_, epochs[name], _ = cl.ProducerID(ctx)
		producers[name] = cl
	}
	other := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("other"))...)
	require.NoError(t, other.BeginTransaction())
	for p := range int32(2) {
		log.add(true, "other", produceOne(ctx, t, other, topic, p, conformanceValue("other.commit", int(p), 200)))
	}
	require.NoError(t, other.EndTransaction(ctx, kgo.TryCommit))

	waitFor(ctx, t, "the timed-out transactions no longer hold the LSO", func() bool {
		ends := listEnds(ctx, t, admin, topic)
		return maps.Equal(ends.lso, ends.hwm)
	})
	described, err := kadm.NewClient(admin).DescribeTransactions(ctx, "slow", "late")
	require.NoError(t, err)
	for name, epoch := range epochs {
		d := described[name]
		require.NoError(t, d.Err)
		require.NotEqual(t, "Ongoing", d.State, "%s's transaction", name)
		require.Greater(t, d.ProducerEpoch, epoch, "%s's epoch was bumped", name)
	}

	r := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(conformanceValue("slow.after", 0, 200))}
	err = producers["slow"].ProduceSync(ctx, r).FirstErr()
	require.True(t, isFencedErr(err), "slow's produce after its timeout: %v", err)
	require.Error(t, producers["late"].EndTransaction(ctx, kgo.TryCommit), "late's commit after its timeout")

	log.end(ctx, t, conformanceClient(t, addr, singleBatches()...), 2)
	for _, lim := range []fetchLimits{{1, 1}, {1 << 20, 1 << 20}} {
		require.Empty(t, logDiff(log.committed(), readCommittedLog(ctx, t, addr, log, lim)), "read with %v", lim)
	}
}

// waitFor polls cond until it holds, failing t with what when ctx ends
// first.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not before the deadline", what)
		case <-tick.C:
		}
	}
}

// isFencedErr reports whether err fences a producer: PRODUCER_FENCED or
// INVALID_PRODUCER_EPOCH.
func isFencedErr(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch)
}

// rawTxn is a transactional producer driven with raw requests: its
// transactional id, producer id and epoch.
type rawTxn struct {
	id    string
	pid   int64
	epoch int16
}

// initRawTxn initializes transactional id txnID with a transaction timeout
// of timeoutMillis.
func initRawTxn(ctx context.Context, t *testing.T, cl *kgo.Client, txnID string, timeoutMillis int32) rawTxn {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis = &txnID, timeoutMillis
	req.ProducerID, req.ProducerEpoch = -1, -1
	resp, err := req.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.NoError(t, kerr.ErrorForCode(resp.ErrorCode))
	return rawTxn{id: txnID, pid: resp.ProducerID, epoch: resp.ProducerEpoch}
}

// endRawTxn ends txn's transaction, requiring success, and returns the
// producer as it continues (EndTxn v5+ bumps the epoch).
func endRawTxn(ctx context.Context, t *testing.T, cl *kgo.Client, txn rawTxn, commit bool) rawTxn {
	t.Helper()
	next, err := endRawTxnErr(ctx, cl, txn, commit)
	require.NoError(t, err, "EndTxn(commit=%v) of %s", commit, txn.id)
	return next
}

// endRawTxnErr ends txn's transaction and returns the producer as it
// continues, or the broker's error.
func endRawTxnErr(ctx context.Context, cl *kgo.Client, txn rawTxn, commit bool) (rawTxn, error) {
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = txn.id, txn.pid, txn.epoch, commit
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return txn, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return txn, err
	}
	if resp.Version >= 5 {
		txn.pid, txn.epoch = resp.ProducerID, resp.ProducerEpoch
	}
	return txn, nil
}

// addPartitionsRaw adds partition p of topic to txn's transaction.
func addPartitionsRaw(ctx context.Context, cl *kgo.Client, txn rawTxn, topic string, p int32) error {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = txn.id, txn.pid, txn.epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{p}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return err
			}
		}
	}
	for _, tx := range resp.Transactions {
		for _, rt := range tx.Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// addOffsetsRaw adds group's offsets to txn's transaction.
func addOffsetsRaw(ctx context.Context, cl *kgo.Client, txn rawTxn, group string) error {
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = txn.id, txn.pid, txn.epoch, group
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// groupIdentity is who a transactional offset commit says it comes from:
// a member of a generation of the group, possibly a static one. A
// generation of -1 and no member is a commit from outside the group.
type groupIdentity struct {
	member     string
	generation int32
	instance   *string
}

// txnOffsetCommitAs puts offset at for partition p of topic, group group,
// into txn's transaction, as id.
func txnOffsetCommitAs(ctx context.Context, cl *kgo.Client, txn rawTxn, group, topic string, p int32, at int64, id groupIdentity) error {
	topicID, err := lookUpTopicID(ctx, cl, topic)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = txn.id, group, txn.pid, txn.epoch
	req.Generation, req.MemberID, req.InstanceID = id.generation, id.member, id.instance
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID // by name before v6, by id since
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = p, at, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}

// lookUpTopicID returns topic's id.
func lookUpTopicID(ctx context.Context, cl *kgo.Client, topic string) ([16]byte, error) {
	topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return [16]byte{}, err
	}
	if err := topics.Error(); err != nil {
		return [16]byte{}, err
	}
	return topics[topic].ID, nil
}

// topicPartitions names partitions by topic.
type topicPartitions map[string][]int32

// fetchedOffset is an offset fetch's answer for one partition: the
// committed offset (-1 for none) or an error.
type fetchedOffset struct {
	at  int64
	err error
}

// fetchEachOffset fetches group's offsets of parts with one OffsetFetch
// request per partition, requiring stable offsets or not.
func fetchEachOffset(ctx context.Context, t *testing.T, cl *kgo.Client, group string, requireStable bool, parts topicPartitions) map[string]map[int32]fetchedOffset {
	t.Helper()
	got := map[string]map[int32]fetchedOffset{}
	for topic, ps := range parts {
		got[topic] = map[int32]fetchedOffset{}
		for _, p := range ps {
			maps.Copy(got[topic], fetchGroupOffsets(ctx, t, cl, group, requireStable, topicPartitions{topic: {p}})[topic])
		}
	}
	return got
}

// fetchGroupOffsets fetches group's offsets of parts in one OffsetFetch
// request, requiring stable offsets or not.
func fetchGroupOffsets(ctx context.Context, t *testing.T, cl *kgo.Client, group string, requireStable bool, parts topicPartitions) map[string]map[int32]fetchedOffset {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.RequireStable = requireStable
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	for topic, ps := range parts {
		topicID, err := lookUpTopicID(ctx, cl, topic)
		require.NoError(t, err)
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.Topic, rt.TopicID, rt.Partitions = topic, topicID, ps // by name before v10, by id since
		rg.Topics = append(rg.Topics, rt)
	}
	req.Groups = append(req.Groups, rg)
	resp, err := req.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.Len(t, resp.Groups, 1)
	require.NoError(t, kerr.ErrorForCode(resp.Groups[0].ErrorCode))
	got := map[string]map[int32]fetchedOffset{}
	for _, rt := range resp.Groups[0].Topics {
		topic := rt.Topic
		if topic == "" {
			for name := range parts {
				if id, err := lookUpTopicID(ctx, cl, name); err == nil && id == rt.TopicID {
					topic = name
				}
			}
		}
		got[topic] = map[int32]fetchedOffset{}
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				got[topic][rp.Partition] = fetchedOffset{err: err}
			} else {
				got[topic][rp.Partition] = fetchedOffset{at: rp.Offset}
			}
		}
	}
	return got
}

// joinClassicGroup joins group, a classic consumer group, with raw
// JoinGroup (again with the member id the broker hands out, when it asks)
// and SyncGroup requests, as its only member, subscribed to topics, and
// returns the member id and generation. With memberID it rejoins: new
// topics start a new generation.
func joinClassicGroup(ctx context.Context, t *testing.T, cl *kgo.Client, group, memberID string, instance *string, topics ...string) (string, int32) {
	t.Helper()
	join := func(member string) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = group, 30_000, 30_000
		req.MemberID, req.InstanceID, req.ProtocolType = member, instance, "consumer"
		p := kmsg.NewJoinGroupRequestProtocol()
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Topics = topics
		p.Name, p.Metadata = "range", meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
		resp, err := req.RequestWith(ctx, cl)
		require.NoError(t, err)
		return resp
	}
	joined := join(memberID)
	if joined.ErrorCode == kerr.MemberIDRequired.Code {
		joined = join(joined.MemberID)
	}
	require.NoError(t, kerr.ErrorForCode(joined.ErrorCode), "join group %s", group)
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.Generation, sync.MemberID, sync.InstanceID = group, joined.Generation, joined.MemberID, instance
	sync.ProtocolType, sync.Protocol = kmsg.StringPtr("consumer"), joined.Protocol
	assignment := kmsg.NewSyncGroupRequestGroupAssignment()
	assignment.MemberID = joined.MemberID
	empty := kmsg.NewConsumerMemberAssignment()
	assignment.MemberAssignment = empty.AppendTo(nil)
	sync.GroupAssignment = append(sync.GroupAssignment, assignment)
	synced, err := sync.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.NoError(t, kerr.ErrorForCode(synced.ErrorCode), "sync group %s", group)
	return joined.MemberID, joined.Generation
}
