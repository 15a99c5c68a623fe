// Package txn is sluice's runtime: a Worker runs one member of an
// application's consumer group and drives the topology's tasks inside
// Kafka transactions, exactly once by default (Config.Guarantee).
//
// # One record, from its fetch to its output and its state
//
//  1. The worker's session (franz-go's GroupTransactSession, eos.go) polls
//     a batch of records read with read_committed.
//  2. Before the transaction begins, the tasks of the polled partitions are
//     created and restored (prepare.go, restore.go): a task is one
//     partition of a sub-topology, and the package topology declares what
//     it is; package stream implements it. A restore never runs while a
//     transaction is open.
//  3. The batch core (package txn/batch, no network I/O and no clock)
//     runs the record through its task (Task.Process, on the lane its
//     partition picks): the operators emit outputs, and each store write
//     becomes a pending write in the task's database (package state) and
//     a changelog record among the outputs.
//  4. Each lane hands its outputs, in order, to a goroutine that produces
//     them into the open transaction (batch.Core.Begin's produce). More
//     polls follow until the commit interval or the batch size is reached
//     (collect, pace.go).
//  5. The loop flushes and ends the transaction: the outputs, the changelog
//     records and the consumed offsets (with the group's generation)
//     commit together, or not at all.
//  6. The loop tells the core the outcome (batch.Core.Advance), and what
//     follows depends on it alone (batch.StepAfter): after a commit each
//     stateful task applies its pending writes with a checkpoint at the
//     offsets the producer set on its changelog records
//     (StatefulTask.Commit, then state's apply); after an abort they are
//     discarded and the tasks stay open; after an unknown outcome every
//     task is dropped and restored from its changelog, and the session is
//     re-created.
//
// The package is the only one that begins, ends or aborts transactions.
// Its broker-side counterparts live apart: txn/broker is the embedded
// broker the demos and tests start, txn/txntest the tests' verifiers.
//
// # Concurrency
//
// A Worker's loop runs on the goroutine that calls Run, with one goroutine
// more per lane and per lane's producer while a batch is processed; a task
// is used by one goroutine at a time. franz-go's rebalance callbacks only
// record revoked partitions; their tasks close after the open transaction
// ends.
package txn
