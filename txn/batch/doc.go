// Package batch is the core of sluice's processing loop: the set of open
// tasks, the lanes that run a poll's records through them, and the table
// that says what follows each batch's outcome. It does no network I/O and
// reads no clock, in the shape of etcd raft's core: the loop (package
// txn's three guarantees, and streamtest's driver) polls, creates and
// restores tasks, produces and commits; the core hands it the outputs to
// produce and, told how the batch ended, commits or discards every task's
// pending state and says what the loop does next.
//
//	c := batch.New(topo, batch.Config{Lanes: 4})
//	ids, _ := c.Missing(fetches) // the loop creates and restores these
//	c.Add(id, task)              // between batches only
//	c.Begin(produce)
//	err := c.Process(fetches)    // once per poll of the batch
//	counts, err := c.Finish()    // every output handed to produce
//	step, err := c.Advance(batch.Committed, revoked)
//
// Which outcome leads to which step (StepAfter):
//
//	outcome         tasks                     revoked tasks   session
//	Committed       apply pending state       close           kept
//	Aborted         discard it, stay open     close           kept
//	ProduceFailed   close all                 (closed)        re-created
//	Unknown         close all                 (closed)        re-created
package batch
