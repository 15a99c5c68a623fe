package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// report prints the median figure of each variant, then the ratios.
func report(w io.Writer, o options, chosen []variant, results map[string][]result) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-18s %10s %9s %8s %8s %10s %5s %6s\n", "variant", "rec/s", "elapsed", "startup", "commits", "rec/commit", "cpu", "others")
	medians := map[string]float64{}
	for _, v := range chosen {
		rs := results[v.name]
		if len(rs) == 0 {
			continue
		}
		m := median(rs, func(r result) float64 { return r.rate })
		medians[v.name] = m
		el := time.Duration(median(rs, func(r result) float64 { return float64(r.elapsed) }))
		su := time.Duration(median(rs, func(r result) float64 { return float64(r.startup) }))
		cm := median(rs, func(r result) float64 { return float64(r.commits) })
		cpu := median(rs, func(r result) float64 { return r.cpu })
		others := median(rs, func(r result) float64 { return r.others })
		fmt.Fprintf(w, "%-18s %10.0f %9v %8v %8.0f %10.0f %5.2f %6.2f", v.name, m, el.Round(time.Millisecond), su.Round(time.Millisecond), cm, float64(o.n)/max(cm, 1), cpu, others)
		if len(rs) > 1 {
			lo := slices.MinFunc(rs, func(a, b result) int { return cmp.Compare(a.rate, b.rate) }).rate
			hi := slices.MaxFunc(rs, func(a, b result) int { return cmp.Compare(a.rate, b.rate) }).rate
			fmt.Fprintf(w, "   (min %.0f, max %.0f over %d runs)", lo, hi, len(rs))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "(rec/s: n / elapsed, from the loop's start to every input offset committed; startup: to the")
	fmt.Fprintln(w, " first fetched batch; commits: EndTxn or OffsetCommit responses; cpu: CPUs this process kept")
	fmt.Fprintln(w, " busy, embedded broker included; others: CPUs other processes kept busy meanwhile)")
	fmt.Fprintln(w)
	for _, r := range ratios(o.txnRecords) {
		num, ok1 := medians[r.num]
		den, ok2 := medians[r.den]
		if !ok1 || !ok2 {
			continue
		}
		q := num / den
		switch {
		case r.target == 0:
			fmt.Fprintf(w, "%-36s = %.2f (no target)", r.num+"/"+r.den, q)
		case q < r.target:
			fmt.Fprintf(w, "%-36s = %.2f (target >= %.2f) BELOW TARGET", r.num+"/"+r.den, q, r.target)
		default:
			fmt.Fprintf(w, "%-36s = %.2f (target >= %.2f) ok", r.num+"/"+r.den, q, r.target)
		}
		// The two loops of one run ran a few seconds apart, under about
		// the same conditions: their ratios show how steady the verdict is.
		if nr, dr := results[r.num], results[r.den]; len(nr) > 1 && len(nr) == len(dr) {
			per := make([]string, len(nr))
			for i := range nr {
				per[i] = fmt.Sprintf("%.2f", nr[i].rate/dr[i].rate)
			}
			fmt.Fprintf(w, "   per run: %s", strings.Join(per, " "))
		}
		fmt.Fprintln(w)
	}
}

// noisy reports whether other processes disturbed a measurement.
func noisy(o options, r result) bool {
	return o.maxOthers > 0 && r.others > o.maxOthers
}

// median returns the median of f over rs.
func median[T any](rs []T, f func(T) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func names(vs []variant) string {
	var ns []string
	for _, v := range vs {
		ns = append(ns, v.name)
	}
	return strings.Join(ns, ", ")
}

func perRun[T any](rs []T, f func(T) string) string {
	s := ""
	for _, r := range rs {
		s += f(r)
	}
	return s
}
