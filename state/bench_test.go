package state_test

import (
	"math/rand/v2"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
)

type nopLog struct{}

func (nopLog) Append(string, []byte, []byte) {}

// BenchmarkCount is one task of cmd/bench's sluice_eos_count: a count per
// key (a Get and a Put per record) over keys distinct keys, committed every
// txn records, on disk. One op is one record.
func BenchmarkCount(b *testing.B) {
	for _, c := range []struct{ keys, txn int }{{12_500, 2_500}, {12_500, 10_000}, {625_000, 2_500}} {
		b.Run("keys="+strconv.Itoa(c.keys)+"/txn="+strconv.Itoa(c.txn), func(b *testing.B) {
			db, err := state.Open(b.TempDir(), state.Options{FS: vfs.Default})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := state.NewKeyValue(db, "counts", "app-counts-changelog", nopLog{}, serde.String, serde.Int64)
			if err != nil {
				b.Fatal(err)
			}
			keys := make([]string, c.keys)
			for i := range keys {
				keys[i] = "k" + strconv.Itoa(i)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			var off int64
			var commit time.Duration
			var ru0 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			for i := range b.N {
				db.Mark()
				k := keys[rng.IntN(len(keys))]
				n, _, err := s.Get(k)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Put(k, n+1); err != nil {
					b.Fatal(err)
				}
				if (i+1)%c.txn == 0 {
					off += int64(c.txn)
					t0 := time.Now()
					err := db.Commit(state.Checkpoint{Offsets: map[string]int64{"app-counts-changelog": off}})
					commit += time.Since(t0)
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			var ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(commit.Nanoseconds())/float64(b.N), "commit-ns/op")
		})
	}
}
