package service

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docDefaults describe, for docs/config.md, the defaults that depend on
// other settings or on the machine, where the flag's own default is
// empty.
var docDefaults = map[string]string{
	"app-id":              "the app name",
	"instance":            "the hostname",
	"state-dir":           "`./state/<app-id>/<instance>`",
	"lanes":               "GOMAXPROCS, at most 8",
	"transaction-timeout": "`--session-timeout`",
	"advertise-addr":      "none",
	"config":              "none",
}

// settingsTable renders the worker's settings as docs/config.md's table.
func settingsTable() string {
	var f workerFlags
	fs := flag.NewFlagSet("doc", flag.ContinueOnError)
	var b strings.Builder
	b.WriteString("| flag | environment | config key | default | meaning |\n|---|---|---|---|---|\n")
	for _, name := range f.register(fs) {
		fl := fs.Lookup(name)
		key := "`" + name + "`"
		if slices.Contains(notInFile, name) {
			key = "(none)"
		}
		def := "`" + fl.DefValue + "`"
		if d, ok := docDefaults[name]; ok {
			def = d
		}
		usage := strings.ReplaceAll(fl.Usage, "<", `\<`) // not an HTML tag
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s | %s |\n", name, EnvName(name), key, def, usage)
	}
	return b.String()
}

// tableAfter returns the markdown table that starts with the line header
// in doc, "" when there is none.
func tableAfter(doc, header string) string {
	_, rest, ok := strings.Cut(doc, "\n"+header)
	if !ok {
		return ""
	}
	var b strings.Builder
	b.WriteString(header)
	for l := range strings.Lines(rest) {
		if !strings.HasPrefix(l, "|") {
			break
		}
		b.WriteString(l)
	}
	return b.String()
}

// docs/config.md lists exactly the worker's settings, with their
// environment variables, config keys, defaults and usage, in order.
func TestConfigDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	require.NoError(t, err)
	want := settingsTable()
	header, _, _ := strings.Cut(want, "\n")
	require.Equal(t, want, tableAfter(string(doc), header+"\n"),
		"docs/config.md's table of worker settings is not the flags'; this is the table the flags give:\n%s", want)
}
