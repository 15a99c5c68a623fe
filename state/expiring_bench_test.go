package state_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
)

// BenchmarkExpiringBehind is the per-record cost of an expiring store as a
// window or dedup uses it, a Put and an expiry pass that removes the
// oldest entry, with expired entries already behind it (deleted,
// committed and flushed, and the compactions their writes caused run,
// which need not have dropped their tombstones): the cost must not grow
// with them (docs/state.md). One op is one record; a commit every 2,500.
func BenchmarkExpiringBehind(b *testing.B) {
	for _, behind := range []int{0, 1_000_000} {
		b.Run("expired="+strconv.Itoa(behind), func(b *testing.B) {
			db, err := state.Open(b.TempDir(), state.Options{FS: vfs.Default})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := state.NewExpiring(db, "w", "app-w-changelog", nopLog{}, serde.String, serde.Int64)
			if err != nil {
				b.Fatal(err)
			}
			const live, txn = 10_000, 2_500
			put := func(i int) {
				if err := s.Put("k"+strconv.Itoa(i), int64(i), ms(int64(i))); err != nil {
					b.Fatal(err)
				}
			}
			commit := func() {
				if err := db.Commit(state.Checkpoint{}); err != nil {
					b.Fatal(err)
				}
			}
			// behind entries expired, then live entries ahead of them.
			for i := range behind + live {
				put(i)
				if (i+1)%txn == 0 {
					commit()
				}
			}
			commit()
			if err := s.Expire(ms(int64(behind-1)), nil); err != nil {
				b.Fatal(err)
			}
			commit()
			done, err := db.Flush()
			if err != nil {
				b.Fatal(err)
			}
			<-done
			// The compactions the setup's writes caused are not the
			// records' cost: they settle first.
			deadline := time.Now().Add(2 * time.Minute)
			for !state.CompactionsSettled(db) {
				if time.Now().After(deadline) {
					b.Fatal("compactions did not settle within 2 minutes")
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The filter of a task opened on this store, built from the
			// index at the first lookup; slices a tenth of the entries'
			// life, as a dedup keeps.
			s.KeepFilter(time.Millisecond * live / 10)
			b.ResetTimer()
			for i := range b.N {
				next := behind + live + i
				put(next)
				if err := s.Expire(ms(int64(next-live)), nil); err != nil {
					b.Fatal(err)
				}
				if (i+1)%txn == 0 {
					commit()
				}
			}
			b.StopTimer() // not the Close
		})
	}
}
