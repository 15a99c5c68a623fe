package state_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
)

// A store with a key filter answers every Get, and expires every entry,
// as one without: through random puts (new keys, replaced keys, expiries
// behind the last pass), deletes, expiry passes, rollbacks, discards and
// commits, with the filter built after the store already holds entries,
// and filters of many keys that grow.
func TestExpiringFilterAnswersAsTheDatabase(t *testing.T) {
	for seed := range 16 {
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 1))
			type side struct {
				db *state.DB
				s  *state.Expiring[string, string]
			}
			var sides [2]side
			for i := range sides {
				db := open(t, vfs.NewMem())
				s, err := state.NewExpiring(db, "ids", "app-ids-changelog", nil, serde.String, serde.String)
				require.NoError(t, err)
				sides[i] = side{db, s}
			}
			filtered := sides[0]
			now, found := int64(0), 0
			both := func(f func(side) (string, error)) string {
				var got [2]string
				for i, sd := range sides {
					out, err := f(sd)
					require.NoError(t, err)
					got[i] = out
				}
				require.Equal(t, got[1], got[0], "the filtered store answers as the plain one")
				return got[0]
			}
			// Odd seeds: wide slices, whose filters grow from a room of 8.
			slice := 7 * time.Millisecond
			if seed%2 == 1 {
				slice = 50 * time.Millisecond
				t.Cleanup(state.SetFilterRoom(8))
			}
			var recent []string // keys put, most of them still held
			key := func() string {
				if len(recent) > 0 && rng.IntN(2) == 0 {
					return recent[len(recent)-1-rng.IntN(min(len(recent), 50))]
				}
				return "k" + strconv.Itoa(rng.IntN(400))
			}
			for op := range 5000 {
				if op == 300 {
					filtered.s.KeepFilter(slice) // built at the next lookup
				}
				switch r := rng.IntN(20); {
				case r < 7:
					k, exp, v := key(), now+rng.Int64N(60)-10, strconv.Itoa(op)
					recent = append(recent, k)
					both(func(sd side) (string, error) { return "", sd.s.Put(k, v, ms(exp)) })
				case r < 12:
					k := key()
					both(func(sd side) (string, error) {
						v, exp, ok, err := sd.s.Get(k)
						if ok && sd == filtered {
							found++
						}
						return fmt.Sprint(v, exp.UnixMilli(), ok), err
					})
				case r < 13:
					k := key()
					both(func(sd side) (string, error) { return "", sd.s.Delete(k) })
				case r < 16:
					now += rng.Int64N(12)
					both(func(sd side) (string, error) {
						var gone []string
						err := sd.s.Expire(ms(now), func(k, v string) error { gone = append(gone, k+"="+v); return nil })
						return fmt.Sprint(gone), err
					})
				case r < 18:
					both(func(sd side) (string, error) { return "", sd.db.Commit(state.Checkpoint{}) })
				case r < 19:
					// A record's writes undone, an expiry pass among them.
					puts := rng.IntN(4)
					keys := make([]string, puts)
					for i := range keys {
						keys[i] = key()
					}
					pass := now + rng.Int64N(30)
					both(func(sd side) (string, error) {
						sd.db.Mark()
						for _, k := range keys {
							if err := sd.s.Put(k, "rolled back", ms(pass+5)); err != nil {
								return "", err
							}
						}
						err := sd.s.Expire(ms(pass), nil)
						sd.db.Rollback()
						return "", err
					})
				default:
					both(func(sd side) (string, error) { return "", sd.db.Discard() })
				}
			}
			both(func(sd side) (string, error) {
				var out []string
				it := sd.s.All()
				for it.Next() {
					out = append(out, it.Key()+"="+it.Value())
				}
				return fmt.Sprint(out), it.Close()
			})
			require.Greater(t, found, 100, "the run compares lookups of keys the stores hold")
		})
	}
}

// With a key filter, looking up and putting keys the store never held
// reads nothing from the database, but for about 1% of them, though a
// lookup probes the filters of all twenty slices the keys expire in;
// without one, each does.
func TestExpiringFilterSparesLookupsOfNewKeys(t *testing.T) {
	for _, filter := range []bool{false, true} {
		db := open(t, vfs.NewMem())
		s := expiring(t, db, nil)
		if filter {
			s.KeepFilter(100 * time.Millisecond)
		}
		for i := range 1000 {
			require.NoError(t, s.Put("old"+strconv.Itoa(i), "v", ms(int64(i))))
		}
		require.NoError(t, db.Commit(state.Checkpoint{}))
		done, err := db.Flush()
		require.NoError(t, err)
		<-done
		// A first lookup builds the filter (a scan, no point reads).
		_, _, found, err := s.Get("old1")
		require.NoError(t, err)
		require.True(t, found)
		before := state.Lookups(db)
		for i := range 1000 {
			k := "new" + strconv.Itoa(i)
			_, _, found, err := s.Get(k)
			require.NoError(t, err)
			require.False(t, found)
			require.NoError(t, s.Put(k, "v", ms(int64(2000+i))))
		}
		lookups := state.Lookups(db) - before
		if filter {
			require.Less(t, lookups, uint64(30), "about 1%% false positives of 1,000 new keys")
		} else {
			require.GreaterOrEqual(t, lookups, uint64(1000))
		}
	}
}

// A slice's filter has about 0.1% false positives at its capacity, so
// that a lookup that probes the ten or so slices of a span has about 1%.
func TestBloomFalsePositives(t *testing.T) {
	const n = 100_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte("id-" + strconv.Itoa(i))
	}
	may := state.FilterProbe(n, keys)
	for _, k := range keys {
		require.True(t, may(k), "no false negatives")
	}
	fp := 0
	for i := range n {
		if may([]byte("other-" + strconv.Itoa(i))) {
			fp++
		}
	}
	rate := float64(fp) / n
	t.Logf("false positives: %.2f%%", 100*rate)
	require.Less(t, rate, 0.002)
}

// A filter built while the open transaction has removed an entry is built
// again after that transaction is discarded or the record rolled back:
// the entry is back, and the filter must know it.
func TestExpiringFilterBuiltMidTransaction(t *testing.T) {
	for _, undo := range []string{"discard", "rollback"} {
		t.Run(undo, func(t *testing.T) {
			db := open(t, vfs.NewMem())
			s := expiring(t, db, nil)
			require.NoError(t, s.Put("k", "v", ms(10)))
			require.NoError(t, db.Commit(state.Checkpoint{}))
			s.KeepFilter(time.Millisecond)
			db.Mark()
			require.Equal(t, []string{"k=v"}, expireAll(t, s, 10))
			_, _, found, err := s.Get("other") // builds the filter, without k
			require.NoError(t, err)
			require.False(t, found)
			if undo == "discard" {
				require.NoError(t, db.Discard())
			} else {
				db.Rollback()
			}
			require.Equal(t, "v@10", getExp(t, s, "k"), "the undone pass brought k back")
		})
	}
}
