package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// crossCheck counts every output topic of the reports again with a client
// no one here wrote — librdkafka, through Debian's kcat, read_committed —
// and returns how each count differs from the one sluice's reader found
// (nothing when all agree). kcat is installed with apt-get when missing.
func crossCheck(ctx context.Context, brokers []string, reports []appReport) ([]string, error) {
	kcat, err := findKcat(ctx)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, rep := range reports {
		for _, topic := range slices.Sorted(maps.Keys(rep.counts)) {
			got, err := kcatCount(ctx, kcat, brokers[0], topic)
			if err != nil {
				return nil, err
			}
			if want := rep.counts[topic]; got != want {
				diffs = append(diffs, fmt.Sprintf("%s: kcat (librdkafka, read_committed) read %d records, sluice's reader %d", topic, got, want))
			}
		}
	}
	return diffs, nil
}

// kcatCount counts topic's records that kcat reads with read_committed, up
// to the end of every partition; a topic that does not exist has none.
func kcatCount(ctx context.Context, kcat, addr, topic string) (int64, error) {
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", addr, "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", `%p %o\n`, "-X", "isolation.level=read_committed", "-X", "fetch.wait.max.ms=10")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "Unknown topic") {
			return 0, nil
		}
		return 0, fmt.Errorf("chaos: kcat read %s: %w: %s", topic, err, stderr.String())
	}
	return int64(bytes.Count(out, []byte("\n"))), nil
}

// findKcat returns kcat's path, installing Debian's package first when it
// is missing (as root, or through sudo).
func findKcat(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("kcat"); err == nil {
		return p, nil
	}
	var prefix []string
	if os.Geteuid() != 0 {
		prefix = []string{"sudo"}
	}
	for _, args := range [][]string{{"apt-get", "update", "-qq"}, {"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "kcat"}} {
		args = append(prefix, args...)
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("chaos: install kcat (%s): %w: %s", strings.Join(args, " "), err, out)
		}
	}
	p, err := exec.LookPath("kcat")
	if err != nil {
		return "", errors.New("chaos: kcat is still missing after apt-get install kcat")
	}
	return p, nil
}
