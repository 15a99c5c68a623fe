package outbox

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// cleaner deletes relayed rows (those up to the committed cursor) in the
// background, on a connection of its own, so that the deletes overlap
// the next batches instead of delaying them. It deletes at most
// CleanupRows rows per statement, each statement its own transaction:
// a DELETE holds a transaction id while it runs, and so the relay's own
// horizon, and a long one would delay the rows written meanwhile.
type cleaner struct {
	r    *Relay
	del  string // the DELETE of relayed rows
	keys string // the DELETE of relayed keys' entries; "" without KeyOrder

	mu     sync.Mutex
	target Cursor        // the committed cursor to delete up to
	wake   chan struct{} // signalled when target moves
	done   Cursor        // deleted up to here (only run's goroutine)
}

func newCleaner(r *Relay) *cleaner {
	c := &cleaner{r: r, wake: make(chan struct{}, 1)}
	c.del = fmt.Sprintf(`DELETE FROM %[1]s WHERE (xid, seq) IN (
		SELECT xid, seq FROM %[1]s WHERE (xid, seq) <= ($1::xid8, $2::bigint) ORDER BY xid, seq LIMIT $3)`, r.table)
	if r.keys != "" {
		// Every transaction still running has an id above the cursor's
		// (the cursor is below the horizon it was read under), so the
		// entries of ids up to it can no longer refuse a write.
		c.keys = fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid IN (
			SELECT ctid FROM %[1]s WHERE xid <= $1::xid8 LIMIT $2)`, r.keys)
	}
	return c
}

// upTo asks for the rows up to cur to be deleted: cur has committed.
func (c *cleaner) upTo(cur Cursor) {
	c.mu.Lock()
	if cur.Compare(c.target) > 0 {
		c.target = cur
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run deletes until ctx ends. A failed DELETE is logged and tried again
// after a pause that grows to 10s: the rows stay, and the relay never
// reads them again (they are behind its cursor).
func (c *cleaner) run(ctx context.Context) {
	const minPause, maxPause = 100 * time.Millisecond, 10 * time.Second
	pause := minPause
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		target := c.target
		c.mu.Unlock()
		if target.Compare(c.done) <= 0 {
			continue
		}
		if err := c.deleteUpTo(ctx, target); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.r.cfg.Logger.Error("outbox: deleting relayed rows (they stay until a later attempt succeeds)",
				"table", c.r.cfg.Table, "up_to", target.String(), "err", err, "pause", pause)
			if !sleep(ctx, pause) {
				return
			}
			pause = min(2*pause, maxPause)
			select { // try again
			case c.wake <- struct{}{}:
			default:
			}
			continue
		}
		pause = minPause
		c.done = target
	}
}

func (c *cleaner) deleteUpTo(ctx context.Context, target Cursor) error {
	limit := c.r.cfg.CleanupRows
	for {
		tag, err := c.r.pool.Exec(ctx, c.del, target.Xid, target.Seq, limit)
		if err != nil {
			return fmt.Errorf("outbox: deleting rows of %s up to %v: %w", c.r.cfg.Table, target, err)
		}
		c.r.deleted.Add(tag.RowsAffected())
		if tag.RowsAffected() < int64(limit) {
			break
		}
	}
	if c.keys == "" {
		return nil
	}
	for {
		tag, err := c.r.pool.Exec(ctx, c.keys, target.Xid, limit)
		if err != nil {
			return fmt.Errorf("outbox: deleting key entries of %s_keys up to xid %d: %w", c.r.cfg.Table, target.Xid, err)
		}
		if tag.RowsAffected() < int64(limit) {
			return nil
		}
	}
}
