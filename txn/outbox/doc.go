// Package outbox relays an outbox table from Postgres into Kafka exactly
// once: an application writes its business rows and the messages that
// announce them in ONE database transaction, and the relay produces the
// committed messages to Kafka, each batch in ONE Kafka transaction
// together with the relay's position (its cursor). It is the start of a
// sluice pipeline whose source is a database; the Postgres sink
// (package pgsink) is its end. Everything Postgres stays in this package
// and pgsink: a program that uses neither does not link pgx.
//
// # Use
//
// The application writes, inside its own transaction:
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'shipped' WHERE id = $1`, id); err != nil {
//			return err
//		}
//		return outbox.Table{}.Write(ctx, tx, outbox.Message{Topic: "order-events", Key: []byte(id), Value: event})
//	})
//
// (or a typed outbox.NewWriter with the DSL's serdes). The relay runs
// beside it, one per outbox table and name:
//
//	r, err := outbox.New(outbox.Config{
//		Brokers:  []string{"127.0.0.1:9092"},
//		Name:     "orders",
//		Postgres: "postgres://app@db/app",
//	})
//	...
//	err = r.Run(ctx) // blocks; nil once ctx is cancelled
//
// Table.DDL is the table's definition (Run creates it when missing).
//
// # Order and the horizon
//
// Every row carries the id of the transaction that wrote it (xid, type
// xid8, the column's default pg_current_xact_id()) and a sequence (seq).
// The relay reads the rows after its cursor in (xid, seq) order, and only
// those whose xid is below pg_snapshot_xmin(pg_current_snapshot()): the
// oldest transaction id still running. Every transaction below it has
// ended, so no row with such an id can appear later, and the cursor never
// passes a row that commits afterwards. A transaction that took a lower
// id and commits after a higher one holds the relay back until it ends,
// and is relayed first; reading by a sequence alone, or by id without
// the horizon, would skip it for good. The cost: one long transaction
// with an id, anywhere on the server (any database), delays the relay
// for as long as it runs. Transactions that only read hold nothing back.
//
// (xid, seq) order is each key's commit order when the key's
// transactions do not overlap in time. Table.KeyOrder makes writers
// refuse the write that would break it (see Table).
//
// # The cursor, fencing and confirmation
//
// A batch (at most Config.MaxBatchRows rows) is produced in one Kafka
// transaction with one more record: the cursor (the last row's xid and
// seq) under the key Config.Name in the compacted Config.CursorTopic. The
// rows and the cursor commit or vanish together. At start, the relay
// initializes its transactional id (TransactionalIDPrefix + Name), which
// fences the previous holder of the name and aborts its open
// transaction, reads its cursor back with read_committed up to the end of
// the topic, and commits a claim: the same cursor under a name of its own
// session. A relay that lost its producer to an error starts a new
// session the same way, but first checks that nobody else claimed the
// name since; if someone did, it stops with a *FencedError instead of
// fencing the newcomer back.
//
// Every commit is confirmed by reading its cursor record back
// (read_committed) before the relay goes on from it: franz-go can report
// an aborted transaction as committed (see the confirmer in confirm.go),
// and a relay that believed it would skip and delete rows that never
// reached Kafka. An unconfirmed commit starts a new session from the last
// committed cursor.
//
// # Cleanup
//
// After a batch is confirmed, a goroutine of the relay deletes the rows
// up to its cursor, at most Config.CleanupRows per statement, on a
// connection of its own, in the background. The deleted rows are dead
// tuples until VACUUM (autovacuum) reclaims them; the relay's reads use
// the primary key from the cursor on and do not visit them. A
// transaction running anywhere on the server keeps VACUUM from reclaiming
// tuples deleted after it began, so long transactions make the table and
// its index grow. Rows the relay has not deleted yet (it stopped between
// the commit and the delete) are deleted by the next relay at start: they
// are behind the cursor and never relayed again.
//
// # Bad rows
//
// A row with no topic (NULL, and no Config.Topic), with unequal header
// arrays, or whose record the broker refuses for good (an unknown topic, a
// record too large) stops the relay with a *RowError naming the row's
// (xid, seq); nothing of its batch is committed. Fix or delete the row
// and restart.
//
// # Concurrency
//
// Run drives one producer and one Kafka transaction at a time, and one
// cleanup goroutine; Stats is safe to call at any time. Table.Write is
// safe for concurrent use by any number of application transactions.
package outbox
