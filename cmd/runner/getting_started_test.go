package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// docPorts is the line of docs/getting-started.md that says where the
// broker and the worker's metrics listen. The test runs every other
// command as the doc writes it, and this one with ports it picked free,
// so that it can run beside other brokers and workers.
const docPorts = "export SLUICE_BROKERS=127.0.0.1:9092 SLUICE_METRICS_ADDR=127.0.0.1:9100"

// docCloneURL is the repository the doc clones; the test's git clones a
// snapshot of the working tree in its place (url.<snapshot>.insteadOf).
const docCloneURL = "https://github.com/sluicehq/sluice.git"

// docWalkthrough is what the first section of a getting-started doc asks
// for, as a bash script, and what it says the commands print.
type docWalkthrough struct {
	script string
	// outputs are the blocks with no language that follow an sh block:
	// what it prints.
	outputs []string
}

var (
	fenceRE = regexp.MustCompile("(?m)^```([a-z]*)\n")
	saveRE  = regexp.MustCompile("Save this [a-z ]*as `([^`]+)`:\\s*$")
)

// readWalkthrough turns the first section of doc (up to its second "## "
// heading) into a script: its sh blocks in order, and each go block that
// follows a sentence ending "Save this ... as `PATH`:" written to PATH
// (relative to where the script is then). Other blocks are left out.
func readWalkthrough(t *testing.T, doc string) docWalkthrough {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## ")
	require.True(t, ok, "no section in the doc")
	section, _, _ := strings.Cut(rest, "\n## ")
	var w docWalkthrough
	var script strings.Builder
	lastSh := false
	for {
		loc := fenceRE.FindStringSubmatchIndex(section)
		if loc == nil {
			break
		}
		prose, lang := section[:loc[0]], section[loc[2]:loc[3]]
		body, after, ok := strings.Cut(section[loc[1]:], "```\n")
		require.True(t, ok, "an unclosed code block: %q", section[loc[0]:])
		switch {
		case lang == "sh":
			script.WriteString(body)
			lastSh = true
		case lang == "go":
			m := saveRE.FindStringSubmatch(strings.TrimSpace(prose))
			require.NotNil(t, m, "a go block the walkthrough does not say to save: after %q", prose)
			fmt.Fprintf(&script, "mkdir -p %s\ncat > %s <<'SLUICE_DOC_FILE'\n%sSLUICE_DOC_FILE\n", filepath.Dir(m[1]), m[1], body)
			lastSh = false
		case lang == "" && lastSh && strings.TrimSpace(prose) == "":
			w.outputs = append(w.outputs, body)
			lastSh = false
		default:
			lastSh = false
		}
		section = after
	}
	w.script = script.String()
	return w
}

// TestGettingStarted follows the first section of docs/getting-started.md,
// command by command, in a fresh clone of the repository (its working
// tree, uncommitted changes included): build the runner and a program of
// one's own, start a broker, create topics, run a worker, write orders and
// read the output with kcat, read a metric, stop. It checks that every
// command succeeds and prints what the doc says it prints (a metric's
// value aside: it counts records of aborted transactions too).
//
// The clone is at the same path on every run, so that the go command's
// build cache serves the second run on; a lock keeps two runs apart.
func TestGettingStarted(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "git", "curl", "kcat"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the doc needs %s (make kcat installs kcat)", tool)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "getting-started.md"))
	require.NoError(t, err)
	w := readWalkthrough(t, string(doc))
	require.Equal(t, 1, strings.Count(w.script, docPorts+"\n"), "docs/getting-started.md must set the ports with exactly\n%s", docPorts)
	require.Contains(t, w.script, "git clone "+docCloneURL+"\n")
	brokers, metrics := freeAddr(t), freeAddr(t)
	script := strings.Replace(w.script, docPorts, fmt.Sprintf("export SLUICE_BROKERS=%s SLUICE_METRICS_ADDR=%s", brokers, metrics), 1)

	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	work := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-getting-started-%x", sha256.Sum256([]byte(root)))[:40])
	lock, err := os.OpenFile(work+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	require.NoError(t, os.RemoveAll(work))
	defer os.RemoveAll(work) // before the lock goes: the next run may be waiting
	origin := filepath.Join(work, "origin")
	snapshot(t, root, origin)
	run := filepath.Join(work, "run")
	require.NoError(t, os.MkdirAll(run, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(work, "walkthrough.sh"), []byte(script), 0o644))

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", filepath.Join(work, "walkthrough.sh"))
	cmd.Dir = run
	cmd.Env = runnerEnv("GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=url."+origin+".insteadOf", "GIT_CONFIG_VALUE_0="+docCloneURL)
	// Its own process group: the background broker and worker go with
	// it, whatever happens.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A broker or worker left running by a failed step holds the output
	// pipes open: stop waiting for them soon after bash exits.
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	require.NoError(t, err, "the walkthrough of docs/getting-started.md failed after %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", time.Since(start), script, stdout.String(), stderr.String())
	t.Logf("walkthrough took %v", time.Since(start))

	require.NotEmpty(t, w.outputs, "the doc shows no output")
	for _, want := range w.outputs {
		for line := range strings.Lines(want) {
			require.Regexp(t, "(?m)^"+outputLine(strings.TrimSuffix(line, "\n"))+"$", stdout.String(),
				"docs/getting-started.md says a command prints %q; stderr:\n%s", line, stderr.String())
		}
	}
}

// outputLine is the regexp of a line the doc says a command prints: the
// line itself, but for a Prometheus sample any value.
func outputLine(line string) string {
	if name, _, ok := strings.Cut(line, "{"); ok && strings.HasPrefix(name, "sluice_") {
		i := strings.LastIndexByte(line, ' ')
		return regexp.QuoteMeta(line[:i+1]) + `[0-9.e+-]+`
	}
	return regexp.QuoteMeta(line)
}

// freeAddr returns a local address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// snapshot makes dir a git repository of one commit holding root's working
// tree: its tracked files as they are now and its untracked files that are
// not ignored.
func snapshot(t *testing.T, root, dir string) {
	t.Helper()
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	files := git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, name := range strings.Split(strings.TrimRight(files, "\x00"), "\x00") {
		src := filepath.Join(root, name)
		fi, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		require.NoError(t, err)
		if !fi.Mode().IsRegular() {
			continue
		}
		dst := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		copyFile(t, src, dst, fi.Mode().Perm())
	}
	git(dir, "init", "-q")
	git(dir, "add", "-A")
	git(dir, "-c", "user.name=sluice test", "-c", "user.email=test@sluice.invalid", "commit", "-qm", "the working tree")
}

func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}
