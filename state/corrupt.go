package state

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// corruptMarker is the file a database's directory gets when Pebble finds
// it damaged while it runs (a block that fails its checksum, read by a
// lookup or a compaction): the next Open reports ErrCorrupt, so that the
// task wipes the directory and restores from its changelogs instead of
// crashing on the same block again.
const corruptMarker = "SLUICE-CORRUPT"

// CorruptionPanic is what a DB panics with when Pebble reports that its
// files are damaged, on whatever goroutine found it (a lookup, an apply,
// a background compaction). Pebble cannot go on after it. The directory
// is marked first, so that the next Open reports ErrCorrupt. Callers that
// recover panics (an operator's record) must panic again with it: the
// damage is the database's, not the record's.
type CorruptionPanic struct {
	Dir string
	Msg string
}

func (p *CorruptionPanic) String() string {
	return fmt.Sprintf("state: database in %s is corrupt: %s", p.Dir, p.Msg)
}

// corruptionLogger drops Pebble's informational logs; a fatal one marks
// the directory and panics with a *CorruptionPanic.
type corruptionLogger struct {
	fs  vfs.FS
	dir string
}

func (corruptionLogger) Infof(string, ...any)  {}
func (corruptionLogger) Errorf(string, ...any) {}
func (l corruptionLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if f, err := l.fs.Create(l.fs.PathJoin(l.dir, corruptMarker), vfs.WriteCategoryUnspecified); err == nil {
		_, _ = f.Write([]byte(msg + "\n"))
		_ = f.Sync()
		_ = f.Close()
	}
	panic(&CorruptionPanic{Dir: l.dir, Msg: msg})
}

// openError classifies a failure of pebble.Open: ErrCorrupt unless the
// directory is merely in use (locked by another process) or not
// accessible, which a wipe must not answer. A database whose files are
// missing, cut short or unreadable is corrupt whatever Pebble calls it (a
// truncated table is "object size mismatch", not a corruption error).
func openError(dir string, err error) error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("state: open %s: %w", dir, err)
	}
	return fmt.Errorf("%w: open %s: %v", ErrCorrupt, dir, err)
}

// markedCorrupt reports whether a running DB found dir damaged.
func markedCorrupt(fs vfs.FS, dir string) bool {
	_, err := fs.Stat(fs.PathJoin(dir, corruptMarker))
	return err == nil
}
