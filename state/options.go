package state

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configures Open and ReadCheckpoint. Its zero value means the
// defaults: the OS file system and the default flush policy. A zero field
// means its default (EnsureDefaults fills them in); a negative one is an
// error (Validate, which Open and ReadCheckpoint call).
//
// The Pebble tuning under the options (bloom filters, L0 thresholds, no
// write-ahead log) is not configurable: the durability argument of the
// package doc depends on it.
type Options struct {
	// FS is the file system; vfs.NewMem() for tests and streamtest.
	// Default vfs.Default, the OS file system.
	FS vfs.FS
	// FlushWrites is how many committed writes (store writes and
	// restored records) the database holds in memory at most before it
	// applies them and flushes them to disk in the background. A crash
	// loses what is not flushed, and the restart replays it from the
	// changelog: about FlushWrites records per task, plus the transaction
	// being applied. FlushWrites input offsets (Checkpoint.Input) since
	// the last flush also call for one: the restart reads that input back
	// too. A flush also happens when Pebble's 4 MiB memtable fills.
	// Default 100,000.
	FlushWrites int
	// MaxUnapplied is how many keys committed transactions may have
	// written before their writes are applied to the database, in one
	// batch that writes each key once. Their values are held in memory
	// meanwhile, as the DB's cache holds read ones. Default 16,384; 1
	// applies every commit on its own.
	MaxUnapplied int
}

// DefaultFlushWrites is the default of Options.FlushWrites.
const DefaultFlushWrites = 100_000

// DefaultMaxUnapplied is the default of Options.MaxUnapplied.
const DefaultMaxUnapplied = 1 << 14

// EnsureDefaults returns o with every zero field set to its default.
// Negative fields are left for Validate to report.
func (o Options) EnsureDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.FlushWrites == 0 {
		o.FlushWrites = DefaultFlushWrites
	}
	if o.MaxUnapplied == 0 {
		o.MaxUnapplied = DefaultMaxUnapplied
	}
	return o
}

// Validate reports what is wrong with o, opening nothing: FlushWrites and
// MaxUnapplied must not be negative (zero means the default). Every
// problem is reported, joined.
func (o Options) Validate() error {
	var errs []error
	if o.FlushWrites < 0 {
		errs = append(errs, fmt.Errorf("state: Options.FlushWrites is %d: it must be positive, or 0 for the default (%d)", o.FlushWrites, DefaultFlushWrites))
	}
	if o.MaxUnapplied < 0 {
		errs = append(errs, fmt.Errorf("state: Options.MaxUnapplied is %d: it must be positive, or 0 for the default (%d)", o.MaxUnapplied, DefaultMaxUnapplied))
	}
	return errors.Join(errs...)
}

// pebbleOptions returns the options of the task's Pebble database in dir,
// o having its defaults.
func (o Options) pebbleOptions(dir string) *pebble.Options {
	popts := &pebble.Options{FS: o.FS, Logger: corruptionLogger{fs: o.FS, dir: dir}}
	// Every store access is a point lookup, half of them (a key's first
	// aggregate) for keys that do not exist: bloom filters on every level
	// spare reading data blocks for those.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// A task's database is small, so Pebble compacts L0 straight into its
	// last level, rewriting the overlapping part of the whole database;
	// with keys spread over the key space, all of it. Letting 16 flushed
	// files gather in L0 (Pebble's default: 4) makes those rewrites rarer:
	// a task that writes many new keys (a dedup's ids) flushes often, and
	// each compaction rewrote what the flushes before it had written. It
	// matters at a restart too: Pebble's Open waits for any compaction
	// that flushing a recovered memtable starts (docs/state.md, "Pebble
	// tuning").
	popts.L0CompactionThreshold = 16
	popts.L0StopWritesThreshold = 48
	// No write-ahead log (see Durability in the package doc): an apply is
	// a memtable insert, and Open never flushes a recovered log (which
	// made Open wait for the compaction that flush started, a restart
	// delay that grew with the database).
	popts.DisableWAL = true
	// One block cache for every database of the process: the tasks of a
	// worker share it as their reads come, instead of each holding a
	// small one of its own (Pebble's default, 8 MiB a database). Lookups
	// of keys the database does not have (every new id of a dedup) read
	// the index and filter blocks of every level, and stay fast only
	// while those are cached.
	popts.Cache = sharedCache()
	return popts
}

// SharedCacheBytes is the size of the block cache that every task
// database of a process shares.
const SharedCacheBytes = 64 << 20

var sharedCache = sync.OnceValue(func() *pebble.Cache {
	return pebble.NewCache(SharedCacheBytes) // held for the process's life
})
