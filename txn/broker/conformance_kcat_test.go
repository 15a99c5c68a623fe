package broker

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The read_committed checks again, read by a second client: librdkafka,
// through kcat (Debian's package, which `make test` installs). Its
// records must be exactly the committed ones, as franz-go's are.

// TestConformanceKcatCutFetches: the check of
// TestConformanceCutFetchesDeliverExactlyTheCommitted, read by librdkafka
// (kcat, read_committed) with fetch.max.bytes from 1000 (librdkafka's
// least: it must be at least message.max.bytes) to 64 MiB and
// max.partition.fetch.bytes from 1 byte: it delivers exactly the
// committed records, as franz-go does with the same limits. kfake alone
// makes librdkafka deliver aborted records too.
func TestConformanceKcatCutFetches(t *testing.T) {
	kcat := kcatPath(t)
	for _, tc := range []struct {
		name string
		fix  fixes
	}{
		{"corrected", allFixes},
		{"kfake alone", allFixes &^ fixFetch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			_, addr := startConformance(t, Config{}, tc.fix)
			createConformanceTopic(ctx, t, addr, "cut", 3, nil)
			log := writeInterleavedTxns(ctx, t, addr, "cut", 3, 6, 1)
			want := log.committed()
			var wrong []string
			for _, lim := range kcatSweep() {
				got := readCommittedKcat(ctx, t, kcat, addr, log.topic, lim)
				if d := logDiff(want, got); d != "" {
					wrong = append(wrong, fmt.Sprintf("%v: %s", lim, d))
				} else if tc.fix == allFixes {
					require.Empty(t, logDiff(readCommittedLog(ctx, t, addr, log, lim), got), "librdkafka and franz-go read with %v", lim)
				}
			}
			if tc.fix == allFixes {
				require.Empty(t, wrong, "librdkafka delivered other than the committed records")
				return
			}
			require.NotEmpty(t, wrong, "kfake alone: librdkafka delivered exactly the committed records at every size")
			t.Logf("kfake alone, %d of %d fetch sizes wrong, e.g. %s", len(wrong), len(kcatSweep()), wrong[0])
		})
	}
}

// TestConformanceKcatStopsAtLastStableOffset: librdkafka reading
// read_committed to the end of a partition (kcat -e) stops at its last
// stable offset (LSO): with a transaction open it delivers exactly the
// committed records below the LSO, none of the open transaction nor the
// record written after it outside any transaction, as franz-go; once the
// transaction aborts, every committed record and none of the aborted.
func TestConformanceKcatStopsAtLastStableOffset(t *testing.T) {
	kcat := kcatPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	_, addr := startConformance(t, Config{}, allFixes)
	const topic = "lso"
	createConformanceTopic(ctx, t, addr, topic, 2, nil)
	plain := conformanceClient(t, addr, singleBatches()...)
	a := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID("lso-a"))...)
	log := &txnLog{topic: topic}

	require.NoError(t, a.BeginTransaction())
	var before []*kgo.Record
	for i, p := range []int32{0, 1, 0, 1} {
		before = append(before, produceOne(ctx, t, a, topic, p, conformanceValue("a.before.commit", i, 300)))
	}
	require.NoError(t, a.EndTransaction(ctx, kgo.TryCommit))
	log.add(true, "a.before", before...)
	require.NoError(t, a.BeginTransaction())
	var open []*kgo.Record
	for i, p := range []int32{0, 1} {
		open = append(open, produceOne(ctx, t, a, topic, p, conformanceValue("a.open.abort", i, 300)))
	}
	outside := produceOne(ctx, t, plain, topic, 0, conformanceValue("plain", 0, 300))

	stable := log.clone() // what is below the LSO
	for _, lim := range []fetchLimits{{1000, 1}, {1 << 20, 1 << 20}} {
		got := readCommittedKcat(ctx, t, kcat, addr, topic, lim)
		require.Empty(t, logDiff(stable.committed(), got), "librdkafka with a transaction open, read with %v", lim)
		require.Empty(t, logDiff(readCommittedLog(ctx, t, addr, stable, lim), got), "librdkafka and franz-go with a transaction open, read with %v", lim)
	}

	require.NoError(t, a.EndTransaction(ctx, kgo.TryAbort))
	log.add(false, "a.open", open...)
	log.add(true, "", outside)
	log.end(ctx, t, plain, 2)
	for _, lim := range []fetchLimits{{1000, 1}, {1 << 20, 1 << 20}} {
		got := readCommittedKcat(ctx, t, kcat, addr, topic, lim)
		require.Empty(t, logDiff(log.committed(), got), "librdkafka once the transaction aborted, read with %v", lim)
		require.Empty(t, logDiff(readCommittedLog(ctx, t, addr, log, lim), got), "librdkafka and franz-go once the transaction aborted, read with %v", lim)
	}
}

// TestConformanceKcatAcrossSegmentsAndRestarts: the check of
// TestConformanceAbortedAcrossSegmentsAndRestarts read by librdkafka: an
// interleaved log in 1 KiB segments, read after a restart and after a
// crash, delivers exactly the committed records, as franz-go.
func TestConformanceKcatAcrossSegmentsAndRestarts(t *testing.T) {
	kcat := kcatPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	dir, crashed := t.TempDir(), t.TempDir()
	const topic = "seg"
	c, addr := startConformance(t, Config{DataDir: dir}, allFixes)
	createConformanceTopic(ctx, t, addr, topic, 2, map[string]*string{"segment.bytes": kadm.StringPtr("1024")})
	log := writeInterleavedTxns(ctx, t, addr, topic, 2, 5, 2)
	copyDir(t, dir, crashed)
	c.Close()
	for _, restart := range []struct{ when, dir string }{{"after a restart", dir}, {"after a crash", crashed}} {
		c, addr := startConformance(t, Config{DataDir: restart.dir}, allFixes)
		for _, lim := range []fetchLimits{{1000, 1}, {1 << 20, 1 << 20}} {
			got := readCommittedKcat(ctx, t, kcat, addr, topic, lim)
			require.Empty(t, logDiff(log.committed(), got), "librdkafka %s, read with %v", restart.when, lim)
			require.Empty(t, logDiff(readCommittedLog(ctx, t, addr, log, lim), got), "librdkafka and franz-go %s, read with %v", restart.when, lim)
		}
		c.Close()
	}
}

// TestConformanceKcatAfterCrash: the check of
// TestConformanceCrashAbortsOpenTransaction read by librdkafka: after a
// crash with a transaction open (also one open at a clean stop before
// it), and a later commit of the same producer, librdkafka delivers
// exactly the committed records, as franz-go.
func TestConformanceKcatAfterCrash(t *testing.T) {
	kcat := kcatPath(t)
	for _, tc := range []struct {
		name      string
		cleanStop bool
	}{
		{"crash", false},
		{"open at a clean stop", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			image, log, open := crashImageWithOpenTxn(ctx, t, tc.cleanStop)
			_, addr := startConformance(t, Config{DataDir: image}, allFixes)
			crasher := conformanceClient(t, addr, append(singleBatches(), kgo.TransactionalID(open.txnID))...)
			require.NoError(t, crasher.BeginTransaction())
			for p := range int32(2) {
				log.add(true, "crasher.after", produceOne(ctx, t, crasher, log.topic, p, conformanceValue("crasher.after.commit", int(p), 200)))
			}
			require.NoError(t, crasher.EndTransaction(ctx, kgo.TryCommit))
			log.end(ctx, t, conformanceClient(t, addr, singleBatches()...), 2)
			for _, lim := range []fetchLimits{{1000, 1}, {1 << 20, 1 << 20}} {
				got := readCommittedKcat(ctx, t, kcat, addr, log.topic, lim)
				require.Empty(t, logDiff(log.committed(), got), "librdkafka after the crash, read with %v", lim)
				require.Empty(t, logDiff(readCommittedLog(ctx, t, addr, log, lim), got), "librdkafka and franz-go after the crash, read with %v", lim)
			}
		})
	}
}

// kcatPath returns the path of kcat, failing t when it is not installed.
func kcatPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat (librdkafka's command-line client) is not installed: run `make test` (or `make kcat`), which installs Debian's kcat package with apt-get: %v", err)
	}
	return path
}

// kcatSweep returns the limits librdkafka reads with in the cut-fetch
// check: fetch.max.bytes from 1000, librdkafka's least, and
// max.partition.fetch.bytes from 1.
func kcatSweep() []fetchLimits {
	return []fetchLimits{
		{1000, 1}, {1000, 250}, {1000, 1000}, {2500, 700}, {2500, 2500},
		{8000, 2500}, {8000, 8000}, {64 << 20, 1000}, {1 << 20, 1 << 20},
	}
}

// readCommittedKcat reads topic from the start with kcat at kcat,
// read_committed and the limits lim (librdkafka's fetch.max.bytes and
// max.partition.fetch.bytes), to the end of each partition (kcat -e: for
// read_committed, its last stable offset), and returns the records it
// printed, per partition in the order printed.
func readCommittedKcat(ctx context.Context, t *testing.T, kcat, addr, topic string, lim fetchLimits) map[int32][]logRecord {
	t.Helper()
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", addr, "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", `%p %o %s\n`,
		"-X", "isolation.level=read_committed",
		"-X", "fetch.max.bytes="+strconv.Itoa(int(lim.request)),
		"-X", "max.partition.fetch.bytes="+strconv.Itoa(int(lim.partition)),
		// librdkafka wants fetch.max.bytes >= message.max.bytes >= 1000.
		"-X", "message.max.bytes=1000",
		// The broker holds a fetch at the end of a partition this long
		// before kcat learns it reached the end.
		"-X", "fetch.wait.max.ms=10",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "kcat read with %v: %s", lim, stderr.String())
	got := map[int32][]logRecord{}
	for line := range strings.Lines(string(out)) {
		fields := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 3)
		require.Len(t, fields, 3, "kcat printed %q", line)
		p, err := strconv.ParseInt(fields[0], 10, 32)
		require.NoError(t, err, "kcat printed %q", line)
		offset, err := strconv.ParseInt(fields[1], 10, 64)
		require.NoError(t, err, "kcat printed %q", line)
		got[int32(p)] = append(got[int32(p)], logRecord{partition: int32(p), offset: offset, value: fields[2]})
	}
	return got
}
