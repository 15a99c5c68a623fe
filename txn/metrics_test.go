package txn

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// docs/operations.md lists exactly the metrics a worker registers, and
// exactly the reasons of sluice_transactions_aborted_total, which its help
// text names.
func TestMetricsMatchTheDocs(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, "docs", "w1")
	// A vector is gathered once it has a series.
	m.txnAborted.WithLabelValues(abortRebalance)
	m.lag.WithLabelValues("in", "0")
	m.restoreOffsets.WithLabelValues("0_0")
	m.restoreRead.WithLabelValues("0_0")
	m.storeKeys.WithLabelValues("counts", "0_0")
	m.storeBytes.WithLabelValues("counts", "0_0")
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var registered []string
	help := map[string]string{}
	for _, mf := range mfs {
		registered = append(registered, mf.GetName())
		help[mf.GetName()] = mf.GetHelp()
	}
	slices.Sort(registered)

	raw, err := os.ReadFile("../docs/operations.md")
	require.NoError(t, err)
	doc := string(raw)
	start := strings.Index(doc, "## Metrics")
	require.GreaterOrEqual(t, start, 0)
	section := doc[start:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	documented := regexp.MustCompile(`sluice_[a-z_]+`).FindAllString(section, -1)
	slices.Sort(documented)
	documented = slices.Compact(documented)
	require.Equal(t, registered, documented, "the metrics of docs/operations.md")

	reasons := regexp.MustCompile(`sluice_transactions_aborted_total\{reason=([a-z_|]+)\}`).FindStringSubmatch(section)
	require.Len(t, reasons, 2, "docs/operations.md lists the abort reasons")
	require.ElementsMatch(t, abortReasons, strings.Split(reasons[1], "|"))
	for _, r := range abortReasons {
		require.Contains(t, help["sluice_transactions_aborted_total"], r)
	}
}
