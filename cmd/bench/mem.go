package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// keepMemoryMapped re-executes the program with GODEBUG=madvdontneed=0
// unless GODEBUG already says how to return memory; it returns only when
// it did not re-execute.
//
// Between variants the bench deletes topics and collects the heap, and
// the runtime's scavenger then hands the freed pages back to the kernel
// with MADV_DONTNEED. The next variant touches them again, and on small
// VMs those page faults are dear (docs/benchmarks.md, "Design choices,
// measured"). With MADV_FREE the kernel takes the pages back only under
// memory pressure, so every variant runs on a warm heap, as a
// long-running worker does.
func keepMemoryMapped() {
	if runtime.GOOS != "linux" || strings.Contains(os.Getenv("GODEBUG"), "madvdontneed=") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	godebug := "madvdontneed=0"
	if old := os.Getenv("GODEBUG"); old != "" {
		godebug = old + "," + godebug
	}
	env := []string{"GODEBUG=" + godebug}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	syscall.Exec(exe, os.Args, env) // returns only on failure: run as is
}

// memSample is the memory of the worker process at one moment.
type memSample struct {
	at          time.Time
	rss, hwm    int64 // VmRSS, VmHWM
	goTotal     int64 // all memory the Go runtime mapped
	goReleased  int64 // of which returned to the OS
	heapObjects int64 // live and not yet swept heap objects
	heapGoal    int64
}

// goResident is what the Go runtime holds and has not released; RSS
// minus it is, roughly, memory allocated outside Go (cgo: Pebble's block
// cache and memtables).
func (m memSample) goResident() int64 { return m.goTotal - m.goReleased }

func reportMem(ctx context.Context, ev *events, every time.Duration, heapProfile string) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/goal:bytes"},
	}
	var written int64
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(samples)
		st := procStatus(os.Getpid())
		heap := int64(samples[2].Value.Uint64())
		ev.emit(time.Now(), "mem", "rss", st["VmRSS"], "hwm", st["VmHWM"],
			"go_total", samples[0].Value.Uint64(), "go_released", samples[1].Value.Uint64(),
			"heap_objects", heap, "heap_goal", samples[3].Value.Uint64())
		if heapProfile != "" && heap > written+written/10 {
			if f, err := os.Create(heapProfile); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
				written = heap
			}
		}
	}
}

// procStatus returns the memory fields of /proc/<pid>/status, in bytes.
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "Vm") && !strings.HasPrefix(k, "Rss") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n << 10
			}
		}
	}
	return out
}
