package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chaosSeed is the short run's schedule.
const chaosSeed = 20261207

// TestChaosShort is the short run of the suite that `make test` includes:
// two minutes of faults of every kind, drawn from a fixed seed, against
// the four apps' worker processes, with two busy processes beside them;
// the output must be exactly what the input calls for.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run takes minutes")
	}
	runner := filepath.Join(t.TempDir(), "runner")
	if out, err := exec.Command("go", "build", "-o", runner, "github.com/sluicehq/sluice/cmd/runner").CombinedOutput(); err != nil {
		t.Fatalf("build the runner: %v\n%s", err, out)
	}
	o := options{duration: 2 * time.Minute, seed: chaosSeed, rate: 50, busy: 2, workers: 3, runner: runner,
		logs: t.TempDir(), session: 6 * time.Second, gap: 3 * time.Second, drain: 4 * time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := run(ctx, o, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.clean() {
		t.Fatalf("not clean: %s", res.figure(o))
	}
	if res.counts.kills == 0 || res.records == 0 {
		t.Fatalf("the run injected no kill or read no input: %s", res.figure(o))
	}
}
