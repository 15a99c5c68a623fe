package ratiobench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// fixed returns a Variant whose runs take the given times, in turn, and
// records the ids it was run with.
func fixed(name, label string, ids *[]string, ds ...time.Duration) Variant {
	return Variant{Name: name, Label: label, Run: func(_ context.Context, id string) (time.Duration, error) {
		*ids = append(*ids, id)
		d := ds[0]
		ds = ds[1:]
		return d, nil
	}}
}

func TestRunInterleavesAndReports(t *testing.T) {
	var ids []string
	var prepared, checked []string
	b := Bench{
		Units: 1000, Unit: "rows", Runs: 3, Target: 0.5,
		Baseline: fixed("raw", "raw_select_produce", &ids, time.Second, 2*time.Second, 500*time.Millisecond),
		Variant:  fixed("relay", "outbox_relay", &ids, 2*time.Second, 2*time.Second, 4*time.Second),
		Prepare: func(_ context.Context, v Variant, id string) error {
			prepared = append(prepared, id)
			return nil
		},
		Check: func(_ context.Context, v Variant) error {
			checked = append(checked, v.Name)
			return nil
		},
	}
	var out strings.Builder
	res, err := b.Run(context.Background(), &out)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []string{"raw-0", "relay-0", "raw-1", "relay-1", "raw-2", "relay-2"}
	if strings.Join(ids, " ") != strings.Join(wantIDs, " ") || strings.Join(prepared, " ") != strings.Join(wantIDs, " ") {
		t.Errorf("ran %v, prepared %v, want both %v", ids, prepared, wantIDs)
	}
	if got := strings.Join(checked, " "); got != "raw relay raw relay raw relay" {
		t.Errorf("checked %s", got)
	}
	want := `run 1 raw        1000 rows/s (1s)
run 1 relay       500 rows/s (2s)
run 2 raw         500 rows/s (2s)
run 2 relay       500 rows/s (2s)
run 3 raw        2000 rows/s (500ms)
run 3 relay       250 rows/s (4s)
raw_select_produce      1000 rows/s (median)
outbox_relay             500 rows/s (median)
outbox_relay/raw_select_produce 0.50 (target >= 0.50; per-run ratios 0.50 1.00 0.12)
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if len(res.Baseline) != 3 || res.Baseline[2] != 2000 || len(res.Variant) != 3 || res.Variant[2] != 250 {
		t.Errorf("result %+v", res)
	}
}

func TestRunStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	var ids []string
	b := Bench{
		Units: 10, Unit: "records", Runs: 2,
		Baseline: fixed("plain", "plain_insert", &ids, time.Second, time.Second),
		Variant: Variant{Name: "sink", Label: "pgsink", Run: func(context.Context, string) (time.Duration, error) {
			return 0, boom
		}},
	}
	var out strings.Builder
	_, err := b.Run(context.Background(), &out)
	if !errors.Is(err, boom) || err.Error() != "sink: boom" {
		t.Fatalf("err %v, want sink: boom", err)
	}
	if len(ids) != 1 || out.String() != "run 1 plain        10 records/s (1s)\n" {
		t.Errorf("ran %v, printed %q", ids, out.String())
	}

	checkErr := errors.New("wrote 3 rows, want 10")
	b.Variant = fixed("sink", "pgsink", &ids, time.Second)
	b.Check = func(_ context.Context, v Variant) error {
		if v.Name == "sink" {
			return checkErr
		}
		return nil
	}
	if _, err := b.Run(context.Background(), &out); err != checkErr {
		t.Errorf("err %v, want the check's error as it is", err)
	}
	if _, err := (Bench{Runs: 0}).Run(context.Background(), &out); err == nil {
		t.Error("no error for 0 runs")
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{3, 1, 2, 4}
	if m := Median(xs); m != 3 {
		t.Errorf("median %v, want 3 (the upper middle)", m)
	}
	if xs[0] != 3 {
		t.Errorf("Median sorted its argument: %v", xs)
	}
	if m := Median([]float64{5}); m != 5 {
		t.Errorf("median %v, want 5", m)
	}
}

// RunUntil stops run once done holds and returns run's early end as an
// error.
func TestRunUntil(t *testing.T) {
	ctx := context.Background()
	calls := 0
	cancelled := false
	end, err := RunUntil(ctx, "relay", time.Millisecond, func(ctx context.Context) error {
		<-ctx.Done()
		cancelled = true
		return nil
	}, func() bool {
		calls++
		return calls == 3
	})
	if err != nil || end.IsZero() || calls != 3 || !cancelled {
		t.Errorf("end %v, err %v, %d calls of done, run cancelled %v; want a time, nil, 3, true", end, err, calls, cancelled)
	}

	never := func() bool { return false }
	if _, err := RunUntil(ctx, "sink", time.Millisecond, func(context.Context) error { return nil }, never); err == nil || err.Error() != "the sink stopped" {
		t.Errorf("err %v, want the sink stopped", err)
	}
	boom := errors.New("boom")
	if _, err := RunUntil(ctx, "sink", time.Millisecond, func(context.Context) error { return boom }, never); err != boom {
		t.Errorf("err %v, want boom", err)
	}
}
