package txn

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/window"
)

// metered passes records on and counts them with a metric of its own.
type metered struct{ seen stream.Counter }

func (m *metered) Init(ctx stream.ProcessorContext) (err error) {
	m.seen, err = ctx.Metrics().Counter("test_metered_records_total", "Records the test's processor saw.")
	return err
}

func (m *metered) Process(_ stream.ProcessorContext, rec stream.Record[string, int64], out stream.Emitter[string, int64]) error {
	m.seen.Inc()
	return out.Emit(rec)
}

// A scrape of /metrics during a run shows what the run did: the poison
// records sent were dead-lettered, the late ones dropped (each exactly
// once, however often a batch was retried), the keys written are the
// store's keys, the processor's own counter saw every record that
// decoded, the lag of every input partition is back to 0 once the input
// is drained, and the latency histogram has observations.
// After Run returns, the series of partitions and stores are gone.
func TestMetricsScrapedDuringARunMatchWhatItDid(t *testing.T) {
	const (
		partitions = 2
		keys       = 50
		good       = 2_000
		poison     = 7
		late       = 5
	)
	_, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	brokers := []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, brokers, partitions, "in", "out", "wout", "mout"))

	b := stream.NewBuilder("scraped")
	seen := stream.From(b, "in", serde.String, serde.Int64)
	seen.Process(func() *metered { return &metered{} }, stream.Named("metered")).To("mout", serde.String, serde.Int64)
	seen.GroupByKey(serde.String, serde.Int64).Count("counts").ToStream().To("out", serde.String, serde.Int64)
	stream.WindowedBy(seen.GroupByKey(serde.String, serde.Int64), window.Tumbling{Size: time.Second}).
		Count("wcounts").ToStream().
		Map(func(k window.Keyed[string], n int64) (string, int64) {
			return k.Key + "@" + strconv.FormatInt(k.Window.Start.UnixMilli(), 10), n
		}).
		To("wout", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	var log txntest.SyncBuffer
	w, err := NewWorker(topo, Config{Brokers: brokers, Instance: "w1", StateDir: t.TempDir(), SessionTimeout: 3 * time.Second,
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	require.NoError(t, err)
	w.sizes.every, w.sizes.next = 50*time.Millisecond, time.Now() // measure the stores soon after commits
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(log.String())
		}
	})

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	// The records were written ten minutes before they are read.
	base := time.Now().Add(-10 * time.Minute)
	value := func(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }
	for i := range int64(good) {
		cl.Produce(ctx, &kgo.Record{Topic: "in", Key: fmt.Appendf(nil, "k%d", i%keys), Value: value(i), Timestamp: base.Add(time.Duration(i) * time.Millisecond)}, nil)
		if i%(good/poison) == 0 && i/(good/poison) < poison {
			cl.Produce(ctx, &kgo.Record{Topic: "in", Key: fmt.Appendf(nil, "k%d", i%keys), Value: []byte("not an int64"), Timestamp: base}, nil)
		}
	}
	require.NoError(t, cl.Flush(ctx))
	// The worker starts once the input is written: a lag of 0 then
	// means every record is committed.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	m := waitMetrics(t, srv.URL, "the input drained", func(m metricFamilies) bool {
		return len(m.series("sluice_consumer_lag")) == partitions && m.sum("sluice_consumer_lag") == 0
	})
	require.Equal(t, float64(poison), m.sum("sluice_dead_letters_total"), "dead-lettered: the poison records sent")
	require.Zero(t, m.sum("sluice_late_records_dropped_total"))
	// Late records now: every window they belong to closed an hour
	// before the stream time of either partition.
	for i := range int64(late) {
		cl.Produce(ctx, &kgo.Record{Topic: "in", Key: fmt.Appendf(nil, "k%d", i), Value: value(i), Timestamp: base.Add(-time.Hour)}, nil)
	}
	require.NoError(t, cl.Flush(ctx))

	m = waitMetrics(t, srv.URL, "the late records dropped, the input drained again and the stores measured", func(m metricFamilies) bool {
		return m.sum("sluice_late_records_dropped_total") == late &&
			m.sum("sluice_consumer_lag") == 0 && m.sum("sluice_store_keys", "store", "counts") == keys
	})
	require.Equal(t, float64(poison), m.sum("sluice_dead_letters_total"), "dead-lettered: the poison records sent")
	require.Equal(t, float64(late), m.sum("sluice_late_records_dropped_total"), "late-dropped: the late records sent")
	// Records of transactions that aborted (the first one after the
	// group's assignment, at least) run again, and count again.
	require.GreaterOrEqual(t, m.sum("sluice_records_processed_total"), float64(good+late+poison))
	require.GreaterOrEqual(t, m.sum("test_metered_records_total"), float64(good+late), "the processor's own counter saw every record that decoded")
	for _, s := range m.series("sluice_consumer_lag") {
		require.Zero(t, s.GetGauge().GetValue(), "lag of %v", s.GetLabel())
	}
	require.Len(t, m.series("sluice_store_keys", "store", "counts"), partitions, "one series per task")
	require.Len(t, m.series("sluice_store_disk_bytes", "store", "counts"), partitions)
	require.Positive(t, m.sum("sluice_store_keys", "store", "wcounts"))
	latency := m.series("sluice_end_to_end_latency_seconds")
	require.Len(t, latency, 1)
	require.Positive(t, latency[0].GetHistogram().GetSampleCount())
	h := latency[0].GetHistogram()
	require.Greater(t, h.GetSampleSum()/float64(h.GetSampleCount()), 590.0, "the records are ten minutes old")
	require.Equal(t, float64(partitions), m.sum("sluice_tasks"))
	require.Equal(t, float64(partitions), m.sum("sluice_assigned_tasks"))
	require.GreaterOrEqual(t, m.sum("sluice_rebalances_total"), 1.0)
	require.Zero(t, m.sum("sluice_restoring_tasks"))
	require.Empty(t, m.series("sluice_restore_offsets"), "no restore in progress")
	require.Equal(t, "scraped", labelOf(latency[0], "app"))
	require.Equal(t, "w1", labelOf(latency[0], "instance"))
	require.Equal(t, "w1", labelOf(m.series("test_metered_records_total")[0], "instance"), "the processor's metric has the worker's labels")

	stop()
	require.NoError(t, <-done)
	m = scrape(t, srv.URL)
	require.Empty(t, m.series("sluice_consumer_lag"), "no partition is this worker's after Run")
	require.Empty(t, m.series("sluice_store_keys"), "no task is open after Run")
	require.Zero(t, m.sum("sluice_assigned_tasks"))
}

// Latency observed in the past: a batch whose first record is a minute
// old is observed a minute late, once per partition and poll.
func TestEndToEndLatencyIsObservedPerPartitionAndPoll(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := &Worker{m: newMetrics(reg, "lat", "w1")}
	old := time.Now().Add(-time.Minute)
	rec := func(p int32, off int64, ts time.Time) *kgo.Record {
		return &kgo.Record{Topic: "in", Partition: p, Offset: off, Timestamp: ts}
	}
	f := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{
		{Partition: 0, HighWatermark: 20, LastStableOffset: 12, Records: []*kgo.Record{rec(0, 5, old), rec(0, 6, time.Now())}},
		{Partition: 1, HighWatermark: 3, LastStableOffset: -1, Records: []*kgo.Record{rec(1, 2, time.Now())}},
		{Partition: 2, HighWatermark: 9, LastStableOffset: 9},
	}}}}}
	w.observe(f)
	w.observeEnd(false)
	require.Zero(t, histogram(t, reg).GetSampleCount(), "an aborted batch is not observed")
	w.observe(f)
	w.observeEnd(true)
	h := histogram(t, reg)
	require.EqualValues(t, 2, h.GetSampleCount(), "one per partition with records")
	require.InDelta(t, 60, h.GetSampleSum(), 5, "the first record of partition 0 is a minute old")
	require.Equal(t, 5.0, testutilGauge(t, w.m.lag, "in", "0"), "the last stable offset, 12, minus 7")
	require.Equal(t, 0.0, testutilGauge(t, w.m.lag, "in", "1"), "the high watermark without a last stable offset")
	w.forgetLag(map[string][]int32{"in": {0}}, false)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "sluice_consumer_lag" {
			require.Len(t, mf.GetMetric(), 1, "partition 0's series is gone")
		}
	}
}

func histogram(t *testing.T, reg *prometheus.Registry) *dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "sluice_end_to_end_latency_seconds" {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	return nil
}

func testutilGauge(t *testing.T, v *prometheus.GaugeVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, v.WithLabelValues(labels...).Write(&m))
	return m.GetGauge().GetValue()
}

// metricFamilies is a scrape of /metrics.
type metricFamilies map[string]*dto.MetricFamily

// series returns the series of name whose labels include the given
// name, value pairs.
func (m metricFamilies) series(name string, labels ...string) []*dto.Metric {
	var out []*dto.Metric
	for _, s := range m[name].GetMetric() {
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && labelOf(s, labels[i]) == labels[i+1]
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// sum adds up the values of the counters or gauges series returns.
func (m metricFamilies) sum(name string, labels ...string) float64 {
	var v float64
	for _, s := range m.series(name, labels...) {
		v += s.GetCounter().GetValue() + s.GetGauge().GetValue()
	}
	return v
}

func labelOf(s *dto.Metric, name string) string {
	for _, l := range s.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func scrape(t *testing.T, url string) metricFamilies {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

// waitMetrics scrapes url until ok holds of the scrape, for at most a
// minute, and returns that scrape.
func waitMetrics(t *testing.T, url, what string, ok func(metricFamilies) bool) metricFamilies {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m := scrape(t, url)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for name, mf := range m {
				if strings.HasPrefix(name, "sluice_") || strings.HasPrefix(name, "test_") {
					fmt.Fprintln(&b, mf.String())
				}
			}
			t.Fatalf("waiting for %s: not within a minute; the last scrape:\n%s", what, b.String())
		}
		<-tick.C
	}
}
