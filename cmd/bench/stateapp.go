package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kadm"
)

// inputEnds returns the end offset of each partition of topic, and their
// sum.
func inputEnds(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, int64, error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, 0, fmt.Errorf("listing the end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	var total int64
	listed.Each(func(l kadm.ListedOffset) {
		ends[l.Partition] = l.Offset
		total += l.Offset
	})
	return ends, total, nil
}

// committedTotal returns the group's committed offsets on topic, summed.
func committedTotal(got kadm.OffsetResponses, topic string) int64 {
	var n int64
	got.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// waitOffsets polls the group's committed offsets every 20ms until they
// reach target on every partition of topic; each poll's answer goes to
// each (nil: none). It gives up when the worker exits or ctx is done.
func waitOffsets(ctx context.Context, adm *kadm.Client, c *childProc, group, topic string, target map[int32]int64, each func(kadm.OffsetResponses)) error {
	for {
		got, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			if each != nil {
				each(got)
			}
			if covered(got, topic, target) {
				return nil
			}
		}
		if err := c.Alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the commit of %s: %w", topic, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stateApp is one child-process benchmark's app: topics, input, state.
type stateApp struct {
	app, in, out string
	dir          string
	fillEnds     map[int32]int64 // input end offsets after the fill
	ends         map[int32]int64 // after the tail
	n            int64           // input records
	keys         int64
}

// newStateApp creates the topics and the input: keys records with
// distinct keys (the fill: every one a new key in the store), then tail
// records whose keys repeat those (the store stays at keys keys).
func newStateApp(ctx context.Context, o options, e env, adm *kadm.Client, name string, keys, tail int64, progress io.Writer) (*stateApp, error) {
	a := &stateApp{app: name, in: name + "-in", out: name + "-out", n: keys + tail, keys: keys}
	if err := broker.CreateTopics(ctx, e.brokers, int32(o.partitions), a.in, a.out); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%s: producing %d input records with %d distinct keys...\n", name, a.n, keys)
	if err := txntest.Produce(ctx, e.brokers, a.in, 0, keys, keys, o.valueSize); err != nil {
		return nil, fmt.Errorf("producing the input: %w", err)
	}
	var err error
	if a.fillEnds, _, err = inputEnds(ctx, adm, a.in); err != nil {
		return nil, err
	}
	if err := txntest.Produce(ctx, e.brokers, a.in, keys, keys+tail, keys, o.valueSize); err != nil {
		return nil, fmt.Errorf("producing the input: %w", err)
	}
	var total int64
	if a.ends, total, err = inputEnds(ctx, adm, a.in); err != nil {
		return nil, err
	}
	if total != a.n {
		return nil, fmt.Errorf("the input holds %d records, want %d", total, a.n)
	}
	if a.dir, err = os.MkdirTemp("", "sluice-bench-"+name+"-"); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *stateApp) config(o options, e env) childConfig {
	return childConfig{Brokers: e.brokers, App: a.app, In: a.in, Out: a.out, StateDir: a.dir, Instance: "0", FetchMaxBytes: o.workerFetchMaxBytes}
}

// cleanup deletes the app's topics and state.
func (a *stateApp) cleanup(adm *kadm.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm.DeleteTopics(ctx, a.in, a.out, changelogOf(a.app), topology.DLQTopic(a.app))
	os.RemoveAll(a.dir)
}

// checkFailure is a wrong output found after a measurement: the figures
// stand and are reported, and the run fails.
type checkFailure struct{ err error }

func (c *checkFailure) Error() string { return c.err.Error() }
func (c *checkFailure) Unwrap() error { return c.err }

// check verifies the count's output: every input record counted once.
func (a *stateApp) check(ctx context.Context, o options, e env) error {
	vctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return checkCounts(vctx, e.brokers, a.out, a.n, a.keys)
}

// startFilled starts a worker process with cfg, labelled label, and waits
// until it has committed the app's fill (every key in its store); what
// names the benchmark in the progress lines. A worker that does not get
// there is killed.
func (a *stateApp) startFilled(wctx context.Context, o options, adm *kadm.Client, cfg childConfig, label, what string, progress io.Writer) (*childProc, error) {
	w, err := startChild(cfg, o.workerEnv(), label, progress)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%s: filling the store...\n", what)
	if err := waitOffsets(wctx, adm, w, a.app, a.in, a.fillEnds, nil); err != nil {
		w.Kill()
		return nil, fmt.Errorf("filling the store: %w", err)
	}
	return w, nil
}

// finish stops feeding, waits until worker w has committed the whole
// input, stops it and checks the counts; after says what came before, for
// the errors. wctx bounds the wait.
func (a *stateApp) finish(ctx, wctx context.Context, o options, e env, adm *kadm.Client, w *childProc, feed *feeder, after string) error {
	var err error
	if a.n, err = feed.stop(); err != nil {
		return fmt.Errorf("feeding the input: %w", err)
	}
	if a.ends, _, err = inputEnds(ctx, adm, a.in); err != nil {
		return err
	}
	if err := waitOffsets(wctx, adm, w, a.app, a.in, a.ends, nil); err != nil {
		return fmt.Errorf("after the %s: %w", after, err)
	}
	if err := w.Stop(stopTimeout); err != nil {
		return err
	}
	if err := a.check(ctx, o, e); err != nil {
		return &checkFailure{fmt.Errorf("after %s: %w", after, err)}
	}
	return nil
}

// checkpointLag reads the checkpoint of every task database in dir,
// read-only (state.ReadCheckpoint: the restarted worker finds each
// database as the killed one left it), and returns how far the
// checkpoints are behind the changelog's read_committed end, in offsets
// (data records and commit markers), summed over the tasks, with the
// tasks that are behind.
func checkpointLag(ctx context.Context, adm *kadm.Client, dir, changelog string) (int64, []string, error) {
	ends, err := adm.ListCommittedOffsets(ctx, changelog)
	if err != nil {
		return 0, nil, fmt.Errorf("listing the ends of %s: %w", changelog, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	var lag int64
	var behind []string
	for _, de := range entries {
		sub, part, ok := strings.Cut(de.Name(), "_")
		p, err := strconv.ParseInt(part, 10, 32)
		if !ok || sub != "0" || err != nil || !de.IsDir() {
			continue
		}
		cp, err := state.ReadCheckpoint(filepath.Join(dir, de.Name()), state.Options{})
		if err != nil {
			return 0, nil, fmt.Errorf("task %s: %w", de.Name(), err)
		}
		end, _ := ends.Lookup(changelog, int32(p))
		if d := end.Offset - cp.Offsets[changelog]; d > 0 {
			lag += d
			behind = append(behind, fmt.Sprintf("%s:%d", de.Name(), d))
		}
	}
	return lag, behind, nil
}
