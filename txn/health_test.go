package txn_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Health flips as a probe needs: a worker that is not running is not
// live; one restoring a task is live but not ready (its restore held up
// by the broker until the test lets it go), and has logged that the
// restore began; once restored it is ready; after Run returns it is
// neither.
func TestHealthDuringRestore(t *testing.T) {
	const n = 5_000
	kc, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	defer kc.Close()
	brokers := []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, brokers, 2, "in", "out"))
	topo, err := sumTopology("health", "in", "out")
	require.NoError(t, err)
	var log txntest.SyncBuffer
	cfg := txn.Config{Brokers: brokers, SessionTimeout: 3 * time.Second, Logger: slog.New(slog.NewTextHandler(&log, nil))}

	// run starts a worker with its own state directory.
	run := func(instance string) (*txn.Worker, func(), *prometheus.Registry) {
		cfg := cfg
		reg := prometheus.NewRegistry()
		cfg.Instance, cfg.StateDir, cfg.Registerer = instance, t.TempDir(), reg
		w, err := txn.NewWorker(topo, cfg)
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(runCtx) }()
		return w, func() {
			stop()
			require.NoError(t, <-done)
		}, reg
	}
	require.NoError(t, txntest.Produce(ctx, brokers, "in", 0, n, 0, 10))
	_, stop, _ := run("w1")
	rep := verifyOutput(t, brokers, n, time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	stop()

	// The changelog's fetches wait while hold is set: w2's restore of
	// the state w1 built cannot end.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, "health-sums-changelog")
	require.NoError(t, err)
	changelog := details["health-sums-changelog"].ID
	var hold atomic.Bool
	hold.Store(true)
	release := make(chan struct{})
	kc.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		for _, tp := range req.(*kmsg.FetchRequest).Topics {
			if (tp.TopicID == changelog || tp.Topic == "health-sums-changelog") && hold.Load() {
				kc.SleepControl(func() { <-release })
			}
		}
		return nil, nil, false
	})

	w2, stop2, reg := run("w2")
	require.NoError(t, txntest.Produce(ctx, brokers, "in", n, n+100, 0, 10)) // tasks are created for records
	// The restore blocks on its first fetch, after it has said it began.
	h := waitHealth(ctx, t, w2, func(h txn.Health) bool {
		return h.Restoring > 0 && strings.Contains(log.String(), `msg="task restoring"`)
	})
	require.True(t, h.Live, "%+v", h)
	require.False(t, h.Ready, "%+v", h)
	require.Contains(t, h.Why, "restoring")
	require.Regexp(t, `msg="task restoring" app=health instance=w2 task=0_[01] offsets=[1-9]`, log.String(), "a restore says when it starts")
	// The metrics show the restore under way: the offsets it reads, none
	// read yet (its fetch is held).
	require.Positive(t, gaugeValue(reg, "sluice_restoring_tasks"))
	require.Positive(t, gaugeValue(reg, "sluice_restore_offsets"))
	require.Zero(t, gaugeValue(reg, "sluice_restore_offsets_read"))

	hold.Store(false)
	close(release)
	h = waitHealth(ctx, t, w2, func(h txn.Health) bool { return h.Ready })
	require.True(t, h.Live)
	require.Empty(t, h.Why)
	rep = verifyOutput(t, brokers, n+100, time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	require.Positive(t, w2.Health().Tasks)
	stop2()
	// The metrics saw it: two tasks assigned and revoked at the stop, two
	// restores, committed batches with every record among them.
	require.Equal(t, 2.0, counterValue(reg, "sluice_tasks_assigned_total"))
	require.Equal(t, 2.0, counterValue(reg, "sluice_tasks_revoked_total"))
	require.Equal(t, uint64(2), histogram(reg, "sluice_restore_duration_seconds").GetSampleCount())
	batches := histogram(reg, "sluice_batch_records")
	require.Positive(t, batches.GetSampleCount())
	require.Equal(t, 100.0, batches.GetSampleSum(), "the 100 records w2 processed")
	require.Positive(t, counterValue(reg, "sluice_records_restored_total"))
	require.Zero(t, gaugeValue(reg, "sluice_restoring_tasks"))
	require.Zero(t, gaugeValue(reg, "sluice_restore_offsets"), "a restore's series goes when it ends")
	h = w2.Health()
	require.False(t, h.Live)
	require.False(t, h.Ready)
	require.Equal(t, "not running", h.Why)
}

// waitHealth waits until w's Health satisfies ok, and returns it.
func waitHealth(ctx context.Context, t *testing.T, w *txn.Worker, ok func(txn.Health) bool) txn.Health {
	t.Helper()
	for {
		h := w.Health()
		if ok(h) {
			return h
		}
		select {
		case <-ctx.Done():
			t.Fatalf("health stayed %+v", h)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// gaugeValue returns the sum of a gauge's series in reg (0 when there
// is none).
func gaugeValue(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetGauge().GetValue()
			}
		}
	}
	return v
}

// histogram returns the histogram name of reg (empty when there is none).
func histogram(reg *prometheus.Registry, name string) *dto.Histogram {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	return &dto.Histogram{}
}
