package state_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// Update is a Get and a Put in one: f sees the value as of the pending
// writes, its result is written and changelogged, and an error from f
// changes nothing. A record's rollback undoes it like a Put.
func TestUpdate(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer db.Close()
	log := &changelog{}
	s := kv(t, db, log)
	appendX := func(old string, found bool) (string, error) {
		if !found {
			return "new", nil
		}
		return old + "x", nil
	}

	v, err := s.Update("a", appendX)
	require.NoError(t, err)
	require.Equal(t, "new", v)
	v, err = s.Update("a", appendX)
	require.NoError(t, err)
	require.Equal(t, "newx", v)
	require.Equal(t, "newx", get(t, s, "a"))

	broken := errors.New("no")
	_, err = s.Update("a", func(string, bool) (string, error) { return "", broken })
	require.ErrorIs(t, err, broken)
	require.Equal(t, "newx", get(t, s, "a"), "a failed update writes nothing")
	require.Equal(t, []string{`app-s-changelog a="new"`, `app-s-changelog a="newx"`}, log.recs)

	require.NoError(t, db.Commit(cp(1)))
	db.Mark()
	_, err = s.Update("a", appendX)
	require.NoError(t, err)
	db.Rollback()
	require.Equal(t, "newx", get(t, s, "a"), "rolled back with its record")
}

// f may read so many other keys that the DB drops cached entries, the one
// Update read among them: the write must still land where later reads
// and the commit find it.
func TestUpdateWhoseReadsEvictItsEntry(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	log := &changelog{}
	s := kv(t, db, log)
	require.NoError(t, s.Put("x", "1"))
	require.NoError(t, db.Commit(cp(1))) // "x" is now a clean, applied entry

	_, err := s.Update("x", func(old string, found bool) (string, error) {
		for i := range 40_000 { // well past the DB's 16,384 cached entries
			if _, _, err := s.Get("other" + strconv.Itoa(i)); err != nil {
				return "", err
			}
		}
		return old + "+2", nil
	})
	require.NoError(t, err)
	require.Equal(t, "1+2", get(t, s, "x"))
	require.Equal(t, `app-s-changelog x="1+2"`, log.recs[len(log.recs)-1], "changelogged under its own key, not the last one f read")
	require.NoError(t, db.Commit(cp(2)))
	require.NoError(t, db.Close())

	db = open(t, fs)
	defer db.Close()
	require.Equal(t, "1+2", get(t, kv(t, db, &changelog{}), "x"))
}
