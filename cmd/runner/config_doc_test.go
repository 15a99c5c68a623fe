package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/examples"
	"github.com/stretchr/testify/require"
)

// docs/config.md lists every example app's own flags with their
// defaults, as the apps define them.
func TestConfigDocAppFlags(t *testing.T) {
	var b strings.Builder
	b.WriteString("| app | flags (default) |\n|---|---|\n")
	for _, app := range examples.All() {
		fs := flag.NewFlagSet(app.Name, flag.ContinueOnError)
		app.Flags(fs)
		var flags []string
		fs.VisitAll(func(f *flag.Flag) { flags = append(flags, fmt.Sprintf("`--%s` (`%s`)", f.Name, f.DefValue)) })
		fmt.Fprintf(&b, "| `%s` | %s |\n", app.Name, strings.Join(flags, ", "))
	}
	want := b.String()

	doc, err := os.ReadFile("../../docs/config.md")
	require.NoError(t, err)
	header, _, _ := strings.Cut(want, "\n")
	var got strings.Builder
	if _, rest, ok := strings.Cut(string(doc), "\n"+header+"\n"); ok {
		got.WriteString(header + "\n")
		for l := range strings.Lines(rest) {
			if !strings.HasPrefix(l, "|") {
				break
			}
			got.WriteString(l)
		}
	}
	require.Equal(t, want, got.String(), "docs/config.md's table of the apps' flags is not theirs; this is the table they give:\n%s", want)
}
