// Package pgsink copies Kafka topics into Postgres exactly once: a
// consumer group whose every poll batch is written in ONE database
// transaction that also advances the batch's offsets, kept in a table of
// the same database.
//
// It is the far end of a sluice pipeline: a topology writes its output
// with Kafka transactions, and the sink reads it with read_committed and
// lands it in tables. Kafka's committed offsets play no part; the offsets
// live with the data they cover, so a batch and its offsets commit or
// vanish together. It imports the Postgres driver (pgx v5), as
// txn/outbox does and no other runtime package: a program that uses
// neither does not link it.
//
// # Use
//
//	write := func(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[string, Result]) error {
//		for _, r := range b.Records {
//			_, err := tx.Exec(ctx, `INSERT INTO revenue_per_minute (customer_id, window_start, revenue_cents)
//				VALUES ($1, $2, $3) ON CONFLICT (customer_id, window_start)
//				DO UPDATE SET revenue_cents = EXCLUDED.revenue_cents`,
//				r.Value.CustomerID, r.Value.WindowStart, r.Value.RevenueCents)
//			if err != nil {
//				return err
//			}
//		}
//		return nil
//	}
//	sink, err := pgsink.New(pgsink.Config{
//		Brokers:  []string{"127.0.0.1:9092"},
//		Group:    "revenue-sink",
//		Topics:   []string{"revenue-per-minute"},
//		Postgres: "postgres://app@db/app",
//	}, serde.String, serde.JSON[Result](), write)
//	...
//	err = sink.Run(ctx) // blocks; nil once ctx is cancelled
//
// Keys and values are decoded by the same serdes as the DSL's
// (package serde). The write function gets the decoded batch and the open
// transaction; it must not commit it. Idempotent writes (INSERT ... ON
// CONFLICT DO NOTHING / DO UPDATE SET col = EXCLUDED.col, never
// col = col + x) are the documented pattern: the sink itself never
// commits a batch twice, but an idempotent table also survives a manual
// rewind of the offsets table and a replay of the topic.
//
// # The offsets table and fencing
//
// One row per (group, topic, partition) holds next_offset (where the
// partition resumes) and epoch (its fencing value). When an instance is
// assigned partitions it bumps their epochs in one statement and resumes
// each from its next_offset (from the start of the log when the row is
// new). Each batch's transaction first runs, per partition,
//
//	UPDATE offsets SET next_offset = <batch end>
//	WHERE group_id = $g AND topic = $t AND partition = $p
//	  AND epoch = <mine> AND next_offset <= <batch start>
//
// and rolls the whole batch back unless every partition's row matched:
// an instance that lost a partition (a zombie: paused past its session
// timeout while another took over) commits nothing. The UPDATE also takes
// the rows' locks, so an epoch bump waits for a batch already under way;
// that batch either commits before the new owner reads next_offset, or
// fails on the new epoch. A stopped instance would hold those locks for
// as long as it is stopped: Postgres ends its session after
// Config.IdleInTransactionTimeout (idle_in_transaction_session_timeout),
// which rolls its batch back and releases them.
//
// A commit whose outcome is unknown (the connection broke during COMMIT)
// needs no special case: the sink rejoins and reads the table, which
// knows.
//
// # Bad records
//
// A record whose key or value does not decode goes, by Config.OnError, to
// the dead-letter table in the same transaction (the default; raw key,
// value, topic, partition, offset and error), or is skipped and counted,
// or stops the sink with a *RecordError naming topic, partition and
// offset. A write function error rolls the batch back; a transient one
// (a lost connection, a serialization failure, a deadlock) makes the sink
// retry from the offsets table, any other stops it with a *WriteError
// naming the batch's partitions and offsets.
//
// # Concurrency
//
// Run drives one group client and one transaction at a time; the write
// function is never called concurrently with itself. Rebalances wait
// for the batch in progress (BlockRebalanceOnPoll), so a healthy group's
// instances are not fenced by their own rebalances.
package pgsink
