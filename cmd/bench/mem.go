package main

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// keepMemoryMapped re-executes the program with GODEBUG=madvdontneed=0
// unless GODEBUG already says how to return memory; it returns only when
// it did not re-execute.
//
// Between variants the bench deletes topics and collects the heap, and
// the runtime's scavenger then hands the freed pages back to the kernel
// with MADV_DONTNEED. The next variant touches them again, and on this
// project's VMs each of those page faults is dear: a variant that met
// 50,000-80,000 of them ran 2-2.5x slower than one that met none, at the
// same CPU use, with a third of it in the kernel. With MADV_FREE the
// kernel takes the pages back only under memory pressure, so every
// variant runs on a warm heap, as a long-running worker does.
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
