package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time the whole machine (from /proc/stat, Linux
// only) and this process had used at one moment. Two samples tell how
// busy the machine was with other work while a variant ran: on a small
// shared machine that is the first suspect of an outlier.
type cpuSample struct {
	machine time.Duration // busy time of all CPUs, steal included; -1: unknown
	self    time.Duration // this process, user + system
	sys     time.Duration // this process, system
	faults  int64         // this process's page faults (minor and major)
}

func sampleCPU() cpuSample {
	s := cpuSample{machine: -1}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		s.sys = time.Duration(ru.Stime.Nano())
		s.faults = ru.Minflt + ru.Majflt
	}
	f, err := os.Open("/proc/stat")
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return s
	}
	// cpu  user nice system idle iowait irq softirq steal guest guest_nice,
	// in clock ticks (USER_HZ, 100 on every Linux we run on). guest time
	// is already part of user.
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return s
	}
	var ticks int64
	for i, fv := range fields[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(fv, 10, 64)
		if err != nil {
			return s
		}
		ticks += n
	}
	s.machine = time.Duration(ticks) * 10 * time.Millisecond
	return s
}

// othersCPU returns how many CPUs, on average, work outside this process
// kept busy between a and b, or -1 when unknown.
func othersCPU(a, b cpuSample, elapsed time.Duration) float64 {
	if a.machine < 0 || b.machine < 0 || elapsed <= 0 {
		return -1
	}
	others := (b.machine - a.machine) - (b.self - a.self)
	return max(0, others.Seconds()/elapsed.Seconds())
}

// waitQuiet waits until other processes keep less than limit CPUs busy
// over a quarter of a second, or until timeout. It returns their load at
// the last look (-1: unknown, and then it does not wait).
func waitQuiet(limit float64, timeout time.Duration) float64 {
	const window = 250 * time.Millisecond
	deadline := time.Now().Add(timeout)
	for {
		a := sampleCPU()
		time.Sleep(window)
		load := othersCPU(a, sampleCPU(), window)
		if load < limit || !time.Now().Before(deadline) {
			return load
		}
	}
}
