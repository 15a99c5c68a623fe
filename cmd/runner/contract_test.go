package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// contractEntry is one command of the CLI section of docs/contract.md.
type contractEntry struct {
	words []string       // the command's words after runner: "topics", "create"
	flags []contractFlag // the [--flag VALUE] it names, in order
	takes bool           // whether it takes APP, the example app's name
	text  string         // the entry as the contract writes it, for messages
}

// contractFlag is a [--name VALUE] of a contract entry.
type contractFlag struct {
	name, value string // value "" for a flag without one (--sync)
	bracket     string // "[--name VALUE]" as written
}

// isDefault tells whether the value the contract gives a flag is its
// default rather than a placeholder (DIR, HOST:PORT), a choice of values
// (text|json) or an abbreviation (..).
func (f contractFlag) isDefault() bool {
	return f.value != "" && f.value != ".." && !strings.Contains(f.value, "|") && !placeholderRE.MatchString(f.value)
}

var (
	contractFlagRE = regexp.MustCompile(`\[--([a-z][a-z-]*)(?: ([^\]]+))?\]`)
	commandWordRE  = regexp.MustCompile(`^[a-z]+$`)
	placeholderRE  = regexp.MustCompile(`^[A-Z][A-Z:_]*$`) // DIR, HOST:PORT
)

// contractCLI returns the entries of the code block of docs/contract.md's
// runner section: each starts with "runner " at the start of a line and
// runs to the next.
func contractCLI(t *testing.T) []contractEntry {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "contract.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(doc), "\n## runner (cmd/runner)\n")
	require.True(t, ok, "docs/contract.md has no runner section")
	_, block, ok := strings.Cut(section, "\n```\n")
	require.True(t, ok, "docs/contract.md's runner section has no code block")
	block, _, _ = strings.Cut(block, "\n```\n")

	var entries []contractEntry
	for line := range strings.Lines(block) {
		if rest, ok := strings.CutPrefix(line, "runner "); ok {
			e := contractEntry{}
			synopsis, _, _ := strings.Cut(rest, "  ") // a description can follow on the line
			for _, w := range strings.Fields(synopsis) {
				if !commandWordRE.MatchString(w) {
					e.takes = w == "APP" || w == "[APP]"
					break
				}
				e.words = append(e.words, w)
			}
			entries = append(entries, e)
		}
		require.NotEmpty(t, entries, "docs/contract.md's runner block starts with %q", line)
		entries[len(entries)-1].text += line
	}
	for i := range entries {
		e := &entries[i]
		for _, m := range contractFlagRE.FindAllStringSubmatch(e.text, -1) {
			e.flags = append(e.flags, contractFlag{name: m[1], value: m[2], bracket: m[0]})
		}
	}
	return entries
}

// contractPending names what the contract specifies and the runner does
// not offer yet, each with the work that adds it. The test passes over
// them, and fails once one is there: then delete its line.
var contractPending = map[string]string{}

// runnerHelp runs runner with args, which ask for help, and returns its
// stdout; it must exit 0.
func runnerHelp(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(runnerBin, args...)
	cmd.Env = runnerEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "runner %s: stderr:\n%s", strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// The CLI section of docs/contract.md is what runner --help says: every
// command it names is listed by runner --help, and each command's --help
// shows its synopsis with every flag the contract gives it, written as the
// contract writes it ([--addr 127.0.0.1:9092]). For the commands that take
// APP, the flags are real, with the contract's defaults: APP's --help
// lists them.
func TestHelpMatchesContract(t *testing.T) {
	t.Parallel()
	entries := contractCLI(t)
	require.GreaterOrEqual(t, len(entries), 9, "docs/contract.md's runner block: %v", entries)
	top := runnerHelp(t, "--help")
	seen := map[string]bool{}
	for _, e := range entries {
		name := strings.Join(e.words, " ")
		t.Run(name, func(t *testing.T) {
			pending := func(what string) bool {
				why, ok := contractPending[what]
				if ok {
					seen[what] = true
					t.Logf("contract's %q pending: %s", what, why)
				}
				return ok
			}
			require.Contains(t, top, "\n  "+e.words[0]+" ", "runner --help does not list %s", e.words[0])
			help := runnerHelp(t, append(e.words, "--help")...)
			if !strings.Contains(help, "runner "+name) {
				if pending(name) {
					return
				}
				require.Failf(t, "command missing from its help", "runner %s --help does not show %q:\n%s", name, "runner "+name, help)
			}
			var flags string
			if e.takes {
				args := append(append([]string{}, e.words...), "passthrough", "--help")
				flags = runnerHelp(t, args...)
				_, flags, _ = strings.Cut(flags, "\nFlags of runner ")
			}
			for _, f := range e.flags {
				if !strings.Contains(help, "--"+f.name) && pending(name+" --"+f.name) {
					continue
				}
				if f.value == ".." {
					require.Contains(t, help, "[--"+f.name+" ", "runner %s --help", name)
				} else {
					require.Contains(t, help, f.bracket, "runner %s --help", name)
				}
				if !e.takes {
					continue
				}
				re := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f.name) + `\b.*\n(.*)$`)
				m := re.FindStringSubmatch(flags)
				require.NotNil(t, m, "runner %s passthrough --help lists no -%s:\n%s", name, f.name, flags)
				if f.isDefault() {
					require.Regexp(t, `\(default "?`+regexp.QuoteMeta(f.value)+`"?\)$`, m[1], "default of runner %s --%s", name, f.name)
				}
			}
		})
	}
	for what := range contractPending {
		require.True(t, seen[what], "%q is no longer pending: delete it from contractPending", what)
	}
}
