package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/txn/batch"
)

// runExactlyOnce runs transactional sessions until ctx is done or a fatal
// error (see runSessions).
func (w *Worker) runExactlyOnce(ctx context.Context) error {
	return w.runSessions(ctx, "re-creating the transactional session", w.eosSession)
}

// runSessions runs sessions one after the other until ctx is done or a
// fatal error. Whatever ends a session short of a fatal error (fencing, an
// unknown transaction outcome, a failed produce, a broker outage or
// restart) is answered the same way: drop all pending work, create a new
// session (under exactly_once a new producer epoch; offsets fetched again
// from the group) and go on, backing off while sessions make no progress.
func (w *Worker) runSessions(ctx context.Context, retrying string, session func(context.Context) (progressed bool, err error)) error {
	for attempt := 0; ; attempt++ {
		// Partitions revoked from an earlier session's client concern
		// tasks that session closed.
		w.takeRevoked()
		progressed, err := session(ctx)
		if isFatal(err) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if fe := classify(err); fe != nil {
			return fe
		}
		if progressed {
			attempt = 0
		}
		w.log.Warn(retrying, "err", err, "attempt", attempt+1)
		if !backoff(ctx, attempt) {
			return nil
		}
	}
}

func isFatal(err error) bool {
	var fe *FatalError
	return errors.As(err, &fe)
}

// promises keeps the first failure among a batch's produced records.
// The changelog offsets that checkpoints need are read from the records
// themselves, by their tasks, after the flush (StatefulTask.Commit).
type promises struct {
	mu  sync.Mutex // promises run on franz-go's goroutines
	err error      // first failed produce of the batch
}

// promise is every produced record's: it keeps the first failure.
func (p *promises) promise(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *promises) first() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// eosSession runs one GroupTransactSession. It returns whether any
// transaction committed, and why the session ended (nil on shutdown).
func (w *Worker) eosSession(ctx context.Context) (progressed bool, err error) {
	if err := w.fenceZombie(ctx); err != nil {
		return false, err
	}
	opts := append(w.groupOpts(),
		kgo.TransactionalID(w.topo.AppID()+"-"+w.cfg.Instance),
		kgo.TransactionTimeout(w.cfg.TransactionTimeout),
	)
	sess, err := kgo.NewGroupTransactSession(append(opts, w.cfg.ClientOpts...)...)
	if err != nil {
		return false, &FatalError{Cause: "invalid client configuration", Err: err}
	}
	w.m.sessions.Inc()
	defer w.closeBounded("the transactional session's client", sess.Close)
	w.health.client.Store(sess.Client())
	defer w.health.client.Store(nil)
	defer func() {
		if IsFenced(err) {
			if h := w.hijacked(ctx, sess.Client()); h != nil {
				err = h
			}
		}
	}()
	c := w.newCore()
	defer w.closeCore(c)

	for {
		pctx, cancel := w.pollContext(ctx, c)
		fetches := sess.PollRecords(pctx, w.pollRecords(0, w.cfg.CommitInterval))
		cancel()
		if ctx.Err() != nil {
			return progressed, nil // no transaction is open
		}
		if err := w.fetchErr(fetches); err != nil {
			return progressed, err
		}
		if err := w.betweenBatches(ctx, c); err != nil {
			return progressed, err
		}
		if fetches.NumRecords() == 0 {
			w.measureStores(c) // the poll may have ended for it
			if !w.punctuationDue(c) {
				continue
			}
			// A transaction for the wall-clock punctuators alone.
		} else if err := w.prepareTasks(ctx, c, sess.Client().CommittedOffsets, fetches); err != nil {
			return progressed, err
		}
		committed, unprepared, err := w.transact(ctx, sess, c, fetches)
		if err != nil {
			return progressed, err
		}
		if unprepared != nil {
			// Aborted for a partition assigned meanwhile: its task is
			// restored now, and the next transaction polls it again.
			if err := w.prepareTasks(ctx, c, sess.Client().CommittedOffsets, unprepared); err != nil {
				return progressed, err
			}
		}
		progressed = progressed || committed
	}
}

// transact runs one transaction over the batch that begins with fetches
// (which may be empty when a wall-clock punctuator is due), whose tasks
// are open: the core processes the batch's polls and runs the due
// wall-clock punctuators, the transaction ends, committing unless something failed, and the core
// takes the step that follows the outcome. It returns whether the
// transaction committed; the poll that brought a partition whose task is
// not open, for which the transaction was aborted (the loop prepares the
// task and goes on); and the error that ends the session (a record that
// failed under the fail policy, a failed produce, an unknown outcome).
func (w *Worker) transact(ctx context.Context, sess *kgo.GroupTransactSession, c *batch.Core, fetches kgo.Fetches) (committed bool, unprepared kgo.Fetches, err error) {
	w.batchBegins()
	if err := sess.Begin(); err != nil {
		w.batchEnds(false, 0)
		return false, nil, fmt.Errorf("txn: begin: %w", err)
	}
	w.txnOpen.Store(true)
	defer w.txnOpen.Store(false)
	var p promises
	// A stop request lets the open transaction finish: producing is not
	// cancelled with ctx (collect stops polling, end commits).
	pctx := context.WithoutCancel(ctx)
	c.Begin(func(r *kgo.Record) { sess.Produce(pctx, r, p.promise) })
	var records int
	var procErr error
	if fetches.NumRecords() > 0 {
		records, procErr = w.collect(ctx, fetches, sess.PollRecords, func(f kgo.Fetches) error {
			w.checkPartitioning(f)
			err := c.Process(f)
			if errors.Is(err, batch.ErrUnprepared) {
				// A partition assigned while the transaction is open: its
				// task is restored after an abort, not inside it.
				unprepared = f
			}
			return processErr(err)
		})
	}
	if procErr == nil && unprepared == nil {
		procErr = w.punctuate(c) // in this transaction
	}
	counts, ferr := c.Finish() // every output is handed to franz-go before the flush
	if procErr == nil && unprepared == nil {
		procErr = ferr
	}
	abort := "" // commit
	switch {
	case unprepared != nil:
		abort = abortNewTask
	case procErr != nil:
		abort = abortProcessingError
	}
	o, why := w.end(sess, &p, abort, records, counts.Produced)
	w.count(counts, o == batch.Committed)
	w.batchEnds(o == batch.Committed, records)
	if w.advance(c, o).Recreate {
		err = why
	}
	switch {
	case unprepared != nil:
		return false, unprepared, err
	case procErr != nil:
		return false, nil, procErr
	}
	return o == batch.Committed, nil, err
}

// closeRevoked closes, between batches, the tasks of the partitions
// revoked since the last batch ended. A task that fails to close is gone
// either way.
func (w *Worker) closeRevoked(c *batch.Core) {
	revoked := w.takeRevoked()
	if len(revoked) == 0 {
		return
	}
	if err := c.CloseRevoked(revoked); err != nil {
		w.log.Warn("closing the tasks of revoked partitions", "err", err)
	}
	w.setTasks(c.Open())
	w.sizes.dirty = true
}

// advance tells the core how the batch ended, with the partitions revoked
// meanwhile, and returns the step the core took. A task closed because
// it failed to apply, discard or close is logged: it restores from its
// changelog before its partition's next batch.
func (w *Worker) advance(c *batch.Core, o batch.Outcome) batch.Step {
	open := c.Open()
	s, err := c.Advance(o, w.takeRevoked())
	if err != nil {
		w.log.Warn("tasks closed after the batch", "outcome", o.String(), "err", err)
	}
	w.setTasks(c.Open())
	w.sizes.dirty = w.sizes.dirty || o == batch.Committed || c.Open() != open
	w.measureStores(c)
	return s
}

// processErr is the error of processing one poll for the loop: a task's
// failure under the fail policy stops the worker.
func processErr(err error) error {
	var te *batch.TaskError
	if errors.As(err, &te) {
		return &FatalError{Cause: "a record failed and the topology's error policy is to fail", Err: err}
	}
	return err
}

// fenceZombie initializes the transactional id before the session joins the
// group. The broker then aborts the transaction a previous incarnation of
// this worker left open, at once. Without it the session's offset fetch
// waits on that transaction's pending offsets (UNSTABLE_OFFSET_COMMIT) until
// the transaction timeout, because franz-go initializes the producer only at
// the first Begin, after the fetch.
func (w *Worker) fenceZombie(ctx context.Context) error {
	cl, err := kgo.NewClient(w.baseOpts()...)
	if err != nil {
		return &FatalError{Cause: "invalid client configuration", Err: err}
	}
	defer cl.Close()
	id := w.topo.AppID() + "-" + w.cfg.Instance
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID = &id
	req.TransactionTimeoutMillis = int32(w.cfg.TransactionTimeout.Milliseconds())
	req.ProducerID, req.ProducerEpoch = -1, -1
	for attempt := 0; ; attempt++ {
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		switch {
		case err == nil:
			return nil
		case classify(err) != nil:
			return classify(err)
		case errors.Is(err, kerr.ConcurrentTransactions) && attempt < 50 && backoff(ctx, 0):
			continue // the broker is still aborting the old transaction
		}
		// The session initializes the producer itself; fencing early only
		// saves time.
		w.log.Warn("could not fence a previous incarnation early", "err", err)
		return nil
	}
}

// collect processes a poll batch, one poll at a time: the fetched records,
// then whatever more is already buffered, until the batch holds
// MaxBatchRecords records, the commit interval has passed since it began,
// nothing more is buffered, or ctx is done. It never waits for the
// network: committing while the next fetch is in flight is what keeps the
// loop as fast as a raw one. Under exactly_once each poll takes only the
// records the worker's pace says it can process in what is left of the
// commit interval, so that the interval bounds a transaction however
// slowly records are processed or acknowledged (see pollRecords).
func (w *Worker) collect(ctx context.Context, fetches kgo.Fetches,
	poll func(context.Context, int) kgo.Fetches, process func(kgo.Fetches) error,
) (records int, err error) {
	deadline := w.now().Add(w.cfg.CommitInterval)
	for {
		n := fetches.NumRecords()
		records += n
		w.observe(fetches)
		start := w.now()
		err = process(fetches)
		w.pace.observe(n, w.now().Sub(start))
		if err != nil || records >= w.cfg.MaxBatchRecords || ctx.Err() != nil || !w.now().Before(deadline) {
			return records, err
		}
		// A nil context is franz-go's "only what is already buffered".
		fetches = poll(nil, w.pollRecords(records, deadline.Sub(w.now())))
		if err := w.fetchErr(fetches); err != nil {
			return records, err
		}
		if fetches.NumRecords() == 0 {
			return records, nil
		}
	}
}

// pollRecords returns how many records the next poll of a batch that
// holds records may return, with budget left of its commit interval.
//
// Under exactly_once that is what the worker's pace says it processes
// within budget. A transaction ends at the first poll after the commit
// interval; were a poll to return MaxBatchRecords records at once,
// processing and producing them could outlast the transaction timeout (a
// worker slowed down, or a slow processor), the broker would abort the
// transaction, and the retry would poll the same records and fail the
// same way, forever. Without transactions nothing times out, and
// at_most_once commits offsets for every poll: those poll the whole
// batch at once.
func (w *Worker) pollRecords(records int, budget time.Duration) int {
	n := w.cfg.MaxBatchRecords - records
	if w.cfg.Guarantee == ExactlyOnce {
		n = w.pace.records(budget, n)
	}
	return n
}

// end ends the open transaction: flush, then commit unless a produce
// failed or abort names why the caller wants an abort ("" to commit). It
// returns the outcome, which decides what follows (batch.StepAfter), and
// for every outcome after which the session goes, why (never nil then).
// records and produced are the batch's, for the logs.
func (w *Worker) end(sess *kgo.GroupTransactSession, p *promises, abort string, records, produced int) (batch.Outcome, error) {
	wantCommit := abort == ""
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.TransactionTimeout)
	defer cancel()
	// Flush before End: waiting on produce results instead would sit out
	// the producer linger on every transaction.
	flushErr := sess.Client().Flush(ctx)
	produceErr := p.first()
	try := kgo.TransactionEndTry(wantCommit && flushErr == nil && produceErr == nil)
	want := sess.Client().UncommittedOffsets()
	committed, err := sess.End(ctx, try)
	if err == nil && !committed && try == kgo.TryCommit && w.committedAnyway(ctx, sess, want) {
		// franz-go retries an EndTxn(commit) answered UNKNOWN_SERVER_ERROR
		// as an abort and reports (false, nil), although the broker may
		// have committed; it then rewinds to offsets that are now stale.
		// The group's offsets tell: the transaction did commit, so the
		// session's positions and the tasks are wrong. Re-create both.
		err = errCommittedAnyway
	}
	switch {
	case err != nil:
		w.m.txnAborted.WithLabelValues(abortUnknownOutcome).Inc()
		w.log.Warn("transaction outcome unknown; dropping pending work", "err", err, "records", records)
		return batch.Unknown, fmt.Errorf("txn: end transaction: %w", err)
	case produceErr != nil || flushErr != nil:
		w.m.txnAborted.WithLabelValues(abortProduceError).Inc()
		if fe := classify(produceErr); fe != nil {
			return batch.ProduceFailed, fe
		}
		return batch.ProduceFailed, fmt.Errorf("txn: produce failed, transaction aborted: %w", errors.Join(produceErr, flushErr))
	case !committed && !wantCommit:
		w.m.txnAborted.WithLabelValues(abort).Inc()
		w.log.Debug("transaction aborted", "reason", abort, "records", records)
		return batch.Aborted, nil
	case !committed:
		// A rebalance (or a group-level commit error the session treats
		// as abortable): franz-go rewound every partition, reprocess.
		w.m.txnAborted.WithLabelValues(abortRebalance).Inc()
		w.log.Info("transaction aborted by a rebalance; reprocessing", "records", records)
		return batch.Aborted, nil
	}
	w.m.txnCommitted.Inc()
	w.log.Debug("transaction committed", "records", records, "produced", produced)
	return batch.Committed, nil
}

var errCommittedAnyway = errors.New("txn: after a commit reported as aborted, the group's offsets are at or past the batch's: it may have committed (or another worker moved on); re-creating the session")

// committedAnyway reports whether the group's committed offsets reached
// want on any partition: after an End that reported an abort, that means
// the transaction committed (or, harmlessly, that another worker already
// moved a revoked partition further). When the offsets cannot be read it
// answers true: re-creating the session is always safe.
func (w *Worker) committedAnyway(ctx context.Context, sess *kgo.GroupTransactSession, want map[string]map[int32]kgo.EpochOffset) bool {
	if len(want) == 0 {
		return false
	}
	got, err := kadm.NewClient(sess.Client()).FetchOffsets(kadm.RequireStable(ctx), w.topo.AppID())
	if err != nil {
		w.log.Warn("cannot read the group's offsets after an aborted commit; re-creating the session", "err", err)
		return true
	}
	for topic, parts := range want {
		for p, eo := range parts {
			if o, ok := got.Lookup(topic, p); ok && o.Err == nil && o.At >= eo.Offset {
				return true
			}
		}
	}
	return false
}

// fetchErr returns the first fetch error that ends the session; other
// fetch errors are transient (franz-go retries them) and only logged.
func (w *Worker) fetchErr(f kgo.Fetches) error {
	for _, fe := range f.Errors() {
		switch {
		case errors.Is(fe.Err, context.Canceled), errors.Is(fe.Err, context.DeadlineExceeded):
		case errors.Is(fe.Err, kgo.ErrClientClosed):
			return fe.Err
		default:
			if fatal := classify(fe.Err); fatal != nil {
				return fatal
			}
			if errors.Is(fe.Err, kerr.InconsistentGroupProtocol) {
				// A rolling upgrade from a sluice that balanced by
				// partition: the worker joins once the others are gone.
				w.log.Warn("the group has members that do not balance by task ("+taskBalancerProtocol+"), such as workers of an older sluice: this worker joins when they have left; stop them",
					"group", w.topo.AppID(), "err", fe.Err)
				continue
			}
			w.log.Warn("fetch error; retrying", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
		}
	}
	return nil
}

// hijacked tells a fenced session whether another live process runs with
// this worker's instance id: the group holds a member with that instance
// id under a member id that is not this session's. Both would otherwise
// go on forever, each new session's producer fencing the other's, as
// static membership alone fences the older one only when its heartbeat
// comes before its next session joins again. The answer is a
// *FatalError (FENCED_INSTANCE_ID), so that one of the two stops; nil
// when no other member has the id (a fence by the broker, at a
// transaction timeout, or the group dropped this worker past its session
// timeout), or when the group cannot be described.
func (w *Worker) hijacked(ctx context.Context, cl *kgo.Client) error {
	member, _ := cl.GroupMetadata()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	groups, err := kadm.NewClient(cl).DescribeGroups(dctx, w.topo.AppID())
	if err != nil {
		return nil
	}
	for _, m := range groups[w.topo.AppID()].Members {
		if m.InstanceID != nil && *m.InstanceID == w.cfg.Instance && m.MemberID != member {
			return classify(fmt.Errorf("%w: group %s member %s (client %s on %s) has instance id %s; this worker's member id is %q",
				kerr.FencedInstanceID, w.topo.AppID(), m.MemberID, m.ClientID, m.ClientHost, w.cfg.Instance, member))
		}
	}
	return nil
}

// closeBounded runs closeClient, a Kafka client's Close, and waits for it at
// most a session timeout. franz-go's Close waits for a JoinGroup in
// flight, which the broker may hold until the group's rebalance timeout
// (a minute) when this worker's instance id was just taken by another
// process: a stop must not wait that long. The close goes on in the
// background; the broker ends the join in time.
func (w *Worker) closeBounded(what string, closeClient func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeClient()
	}()
	t := time.NewTimer(w.cfg.SessionTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		w.log.Warn("closing "+what+" takes longer than the session timeout; it goes on in the background", "timeout", w.cfg.SessionTimeout)
	}
}
