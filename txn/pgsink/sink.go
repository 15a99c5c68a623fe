package pgsink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/internal/pgsql"
)

// Record is one decoded Kafka record of a batch. The write function may
// keep it; the sink does not reuse it.
type Record[K, V any] struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Headers   []kgo.RecordHeader
	Key       K
	Value     V
}

// Span is what a batch covers of one partition: the records from offset
// From up to Next (exclusive: the offset the partition resumes from once
// the batch is committed), under the partition's fencing epoch.
type Span struct {
	Topic     string
	Partition int32
	From      int64
	Next      int64
	// Epoch is the partition's fencing value: the offsets table's epoch
	// this instance set when it was assigned the partition.
	Epoch int64
}

// Batch is one poll's records, written in one database transaction.
type Batch[K, V any] struct {
	// Records are the batch's records that decoded, in the order of
	// each partition's offsets (partitions interleaved).
	Records []Record[K, V]
	// Spans are the partitions the batch covers, sorted by topic and
	// partition. A span may cover no record of Records: its records all
	// went to the dead-letter table or were skipped.
	Spans []Span
}

// WriteFunc writes a batch inside the transaction tx that also advances
// the batch's offsets. It must not commit or roll back tx. An error rolls
// the whole batch back (see Run for what follows). Make the writes
// idempotent where you can (INSERT ... ON CONFLICT DO NOTHING / DO
// UPDATE): the sink never writes a committed batch twice, but an
// idempotent write also survives a manual reset of the offsets table.
type WriteFunc[K, V any] func(ctx context.Context, tx pgx.Tx, b *Batch[K, V]) error

// Stats are a sink's counters since New.
type Stats struct {
	Batches     int64 // batches committed
	Records     int64 // records written (given to the write function and committed)
	DeadLetters int64 // records committed to the dead-letter table
	Skipped     int64 // records dropped under OnErrorSkip
	Fenced      int64 // batches refused because another instance owns a partition
	Rejoins     int64 // times the sink left its session and rejoined the group
}

// Sink copies the records of Kafka topics into Postgres exactly once. See
// the package documentation.
type Sink[K, V any] struct {
	cfg     Config
	key     serde.Serde[K]
	value   serde.Serde[V]
	write   WriteFunc[K, V]
	offsets string // quoted table identifiers
	dlq     string

	pool *pgxpool.Pool

	mu    sync.Mutex
	owned map[topicPartition]int64 // epoch of each partition held

	batches, records, deadLetters, skipped, fenced, rejoins atomic.Int64

	// beforeBegin, when set (by tests), runs after a batch is polled and
	// decoded, before its transaction begins.
	beforeBegin func(spans []Span)
}

type topicPartition struct {
	topic     string
	partition int32
}

// New returns a sink that decodes records with key and value and writes
// them with write. It checks cfg (see Config.Validate) and connects to
// nothing: Run does.
func New[K, V any](cfg Config, key serde.Serde[K], value serde.Serde[V], write WriteFunc[K, V]) (*Sink[K, V], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if key == nil || value == nil || write == nil {
		return nil, errors.New("pgsink: New needs a key serde, a value serde and a write function")
	}
	cfg = cfg.withDefaults()
	offsets, _ := tableIdent(cfg.OffsetsTable)
	dlq, _ := tableIdent(cfg.DeadLetterTable)
	return &Sink[K, V]{cfg: cfg, key: key, value: value, write: write, offsets: offsets, dlq: dlq}, nil
}

// Stats returns the sink's counters. It is safe to call concurrently
// with Run.
func (s *Sink[K, V]) Stats() Stats {
	return Stats{
		Batches: s.batches.Load(), Records: s.records.Load(), DeadLetters: s.deadLetters.Load(),
		Skipped: s.skipped.Load(), Fenced: s.fenced.Load(), Rejoins: s.rejoins.Load(),
	}
}

// retry is an error after which the sink rejoins the group and resumes
// from the offsets table: whatever the failed batch did or did not
// commit, the table says where to go on.
type retry struct{ err error }

func (r *retry) Error() string { return r.err.Error() }
func (r *retry) Unwrap() error { return r.err }

// Run opens the database (creating the offsets and dead-letter tables
// when missing), joins the group and writes batches until ctx is
// cancelled. It returns nil on cancellation and an error on a fatal
// failure: a *RecordError under OnErrorFail, a *WriteError for a write
// function error that is not transient, or a database error at start
// that is not transient (permissions, a bad connection string; a
// transient one while creating the tables is retried, with the same
// pauses as below).
//
// Everything else is survived the same way: a fenced batch (another
// instance took a partition over), a transient database error (a lost
// connection, a serialization failure or deadlock, a transaction ended by
// idle_in_transaction_session_timeout), and a commit whose outcome is
// unknown all make the sink leave its group session, rejoin, and resume
// each assigned partition from the offsets table, after a pause that
// grows from 100ms to 5s while nothing commits.
//
// Run must not be called twice at once.
func (s *Sink[K, V]) Run(ctx context.Context) error {
	if s.cfg.Pool != nil {
		s.pool = s.cfg.Pool
	} else {
		pc, err := pgxpool.ParseConfig(s.cfg.Postgres)
		if err != nil {
			return fmt.Errorf("pgsink: %w", err)
		}
		pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(s.cfg.IdleInTransactionTimeout.Milliseconds(), 10)
		if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
			pc.ConnConfig.RuntimeParams["application_name"] = "sluice-sink " + s.cfg.Group
		}
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return fmt.Errorf("pgsink: %w", err)
		}
		defer pool.Close()
		s.pool = pool
	}
	const minPause, maxPause = 100 * time.Millisecond, 5 * time.Second
	for pause := minPause; ; pause = min(2*pause, maxPause) {
		err := CreateTables(ctx, s.pool, s.cfg)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			break
		}
		if !pgsql.Transient(err) {
			return err
		}
		// A lost connection, a lock timeout, or an idle-in-transaction
		// timeout on a loaded machine: try again.
		s.cfg.Logger.Warn("pgsink: creating the tables failed; retrying", "err", err, "pause", pause)
		if !pauseFor(ctx, pause) {
			return nil
		}
	}

	pause := minPause
	for {
		before := s.batches.Load()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if _, ok := errors.AsType[*retry](err); !ok {
			return err
		}
		s.rejoins.Add(1)
		if s.batches.Load() > before || IsFenced(err) {
			pause = minPause
		}
		s.cfg.Logger.Warn("pgsink: rejoining the group, resuming from the offsets table", "group", s.cfg.Group, "err", err, "pause", pause)
		if !pauseFor(ctx, pause) {
			return nil
		}
		pause = min(2*pause, maxPause)
	}
}

// pauseFor waits d, or until ctx is done: it reports whether d passed.
func pauseFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// CreateTables creates cfg's offsets and dead-letter tables in the
// database of pool when they are missing, and runs cfg.Setup. Run does it at start; call it
// to create them ahead, e.g. from a migration, or to write offsets rows
// before the first run. Concurrent callers serialize on an advisory
// lock: CREATE TABLE IF NOT EXISTS alone can fail when two run at once.
func CreateTables(ctx context.Context, pool *pgxpool.Pool, cfg Config) error {
	cfg = cfg.withDefaults()
	offsets, err := tableIdent(cfg.OffsetsTable)
	if err != nil {
		return err
	}
	dlq, err := tableIdent(cfg.DeadLetterTable)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('sluice.pgsink.schema'))"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(offsetsDDL, offsets)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(deadLettersDDL, dlq)); err != nil {
			return err
		}
		if cfg.Setup != nil {
			return cfg.Setup(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgsink: creating the tables %s and %s (and Config.Setup's): %w", offsets, dlq, err)
	}
	return nil
}

const offsetsDDL = `CREATE TABLE IF NOT EXISTS %s (
	group_id    text        NOT NULL,
	topic       text        NOT NULL,
	partition   integer     NOT NULL,
	next_offset bigint      NOT NULL,
	epoch       bigint      NOT NULL,
	updated_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (group_id, topic, partition)
)`

const deadLettersDDL = `CREATE TABLE IF NOT EXISTS %s (
	group_id         text        NOT NULL,
	topic            text        NOT NULL,
	partition        integer     NOT NULL,
	record_offset    bigint      NOT NULL,
	record_key       bytea,
	record_value     bytea,
	record_timestamp timestamptz NOT NULL,
	error            text        NOT NULL,
	failed_at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (group_id, topic, partition, record_offset)
)`

// session is one life of the group client: it joins, writes batches and
// returns on cancellation (nil), on an error to retry (*retry) or on a
// fatal one.
func (s *Sink[K, V]) session(ctx context.Context) error {
	s.mu.Lock()
	s.owned = make(map[topicPartition]int64)
	s.mu.Unlock()
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.Topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.AdjustFetchOffsetsFn(s.assign),
		kgo.OnPartitionsRevoked(s.drop),
		kgo.OnPartitionsLost(s.drop),
	}
	if s.cfg.Instance != "" {
		opts = append(opts, kgo.InstanceID(s.cfg.Instance))
	}
	cl, err := kgo.NewClient(append(opts, s.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("pgsink: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollRecords(ctx, s.cfg.MaxBatchRecords)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			s.cfg.Logger.Warn("pgsink: fetch", "topic", topic, "partition", partition, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		err := s.commit(ctx, recs)
		cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// assign is the group's AdjustFetchOffsetsFn: for the partitions just
// assigned, it bumps their epochs in the offsets table (inserting rows
// for new ones) and replaces Kafka's committed offsets with the table's.
// The bump waits for the row locks of a previous owner's open
// transaction, so a batch the previous owner already began either
// commits before this resumes from it, or fails on the new epoch.
func (s *Sink[K, V]) assign(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var tps []topicPartition
	for t, ps := range offsets {
		for p := range ps {
			tps = append(tps, topicPartition{t, p})
		}
	}
	if len(tps) == 0 {
		return offsets, nil
	}
	slices.SortFunc(tps, compareTP)
	topics := make([]string, len(tps))
	parts := make([]int32, len(tps))
	for i, tp := range tps {
		topics[i], parts[i] = tp.topic, tp.partition
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`INSERT INTO %[1]s AS o (group_id, topic, partition, next_offset, epoch)
		SELECT $1, t, p, -1, 1 FROM unnest($2::text[], $3::integer[]) AS u(t, p) ORDER BY t, p
		ON CONFLICT (group_id, topic, partition) DO UPDATE SET epoch = o.epoch + 1, updated_at = now()
		RETURNING topic, partition, next_offset, epoch`, s.offsets), s.cfg.Group, topics, parts)
	if err != nil {
		return nil, fmt.Errorf("pgsink: taking over partitions in %s: %w", s.offsets, err)
	}
	type row struct {
		tp          topicPartition
		next, epoch int64
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.tp.topic, &r.tp.partition, &r.next, &r.epoch); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pgsink: taking over partitions in %s: %w", s.offsets, err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgsink: taking over partitions in %s: %w", s.offsets, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range got {
		o := kgo.NewOffset().AtStart()
		if r.next >= 0 {
			o = kgo.NewOffset().At(r.next).WithEpoch(-1)
		}
		offsets[r.tp.topic][r.tp.partition] = o
		s.owned[r.tp] = r.epoch
		s.cfg.Logger.Info("pgsink: partition assigned", "topic", r.tp.topic, "partition", r.tp.partition, "next_offset", r.next, "epoch", r.epoch)
	}
	return offsets, nil
}

// drop forgets the epochs of revoked or lost partitions.
func (s *Sink[K, V]) drop(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range lost {
		for _, p := range ps {
			delete(s.owned, topicPartition{t, p})
		}
	}
}

func compareTP(a, b topicPartition) int {
	return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
}

// deadLetter is a record that did not decode, bound for the dead-letter
// table.
type deadLetter struct {
	rec *kgo.Record
	err error
}

// commit writes one polled batch in one database transaction: first the
// offsets, fenced by epoch (which also takes the partitions' row locks),
// then the dead letters, then the user's write.
func (s *Sink[K, V]) commit(ctx context.Context, recs []*kgo.Record) error {
	spans, err := s.spans(recs)
	if err != nil {
		return err
	}
	batch := &Batch[K, V]{Records: make([]Record[K, V], 0, len(recs)), Spans: spans}
	var dead []deadLetter
	var skipped int64
	for _, r := range recs {
		k, err := s.key.Decode(r.Key)
		if err != nil {
			err = fmt.Errorf("decode key: %w", err)
		}
		var v V
		if err == nil {
			if v, err = s.value.Decode(r.Value); err != nil {
				err = fmt.Errorf("decode value: %w", err)
			}
		}
		if err != nil {
			switch s.cfg.OnError {
			case OnErrorFail:
				return &RecordError{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Err: err}
			case OnErrorSkip:
				skipped++
				s.cfg.Logger.Warn("pgsink: record skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			default:
				dead = append(dead, deadLetter{r, err})
			}
			continue
		}
		batch.Records = append(batch.Records, Record[K, V]{
			Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
			Headers: r.Headers, Key: k, Value: v,
		})
	}
	if s.beforeBegin != nil {
		s.beforeBegin(spans)
	}

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.dbError(ctx, "beginning a transaction", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	pb := &pgx.Batch{}
	update := fmt.Sprintf(`UPDATE %s SET next_offset = $4, updated_at = now()
		WHERE group_id = $1 AND topic = $2 AND partition = $3 AND epoch = $5 AND next_offset <= $6`, s.offsets)
	for _, sp := range spans {
		pb.Queue(update, s.cfg.Group, sp.Topic, sp.Partition, sp.Next, sp.Epoch, sp.From)
	}
	insertDead := fmt.Sprintf(`INSERT INTO %s (group_id, topic, partition, record_offset, record_key, record_value, record_timestamp, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`, s.dlq)
	for _, d := range dead {
		pb.Queue(insertDead, s.cfg.Group, d.rec.Topic, d.rec.Partition, d.rec.Offset, d.rec.Key, d.rec.Value, d.rec.Timestamp, d.err.Error())
	}
	br := tx.SendBatch(ctx, pb)
	for _, sp := range spans {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return s.dbError(ctx, "advancing offsets", err)
		}
		if tag.RowsAffected() != 1 {
			br.Close()
			s.fenced.Add(1)
			return &retry{&FencedError{Topic: sp.Topic, Partition: sp.Partition, Epoch: sp.Epoch}}
		}
	}
	for range dead {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return s.dbError(ctx, "writing dead letters to "+s.dlq, err)
		}
	}
	if err := br.Close(); err != nil {
		return s.dbError(ctx, "advancing offsets", err)
	}
	if len(batch.Records) > 0 {
		if err := s.write(ctx, tx, batch); err != nil {
			if ctx.Err() != nil || pgsql.Transient(err) {
				return &retry{&WriteError{Spans: spans, Err: err}}
			}
			return &WriteError{Spans: spans, Err: err}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		// The outcome is unknown; the offsets table knows it.
		return &retry{fmt.Errorf("pgsink: commit (outcome unknown, resuming from the offsets table): %w", err)}
	}
	s.batches.Add(1)
	s.records.Add(int64(len(batch.Records)))
	s.deadLetters.Add(int64(len(dead)))
	s.skipped.Add(skipped)
	if s.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		s.cfg.Logger.Debug("pgsink: batch committed", "records", len(batch.Records), "dead_letters", len(dead), "spans", len(spans))
	}
	return nil
}

// spans returns the spans of recs, each with its partition's epoch.
func (s *Sink[K, V]) spans(recs []*kgo.Record) ([]Span, error) {
	idx := make(map[topicPartition]int)
	var spans []Span
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		tp := topicPartition{r.Topic, r.Partition}
		i, ok := idx[tp]
		if !ok {
			epoch, held := s.owned[tp]
			if !held {
				return nil, &retry{fmt.Errorf("pgsink: polled %s[%d]@%d, a partition not held", r.Topic, r.Partition, r.Offset)}
			}
			i = len(spans)
			idx[tp] = i
			spans = append(spans, Span{Topic: r.Topic, Partition: r.Partition, From: r.Offset, Epoch: epoch})
		}
		spans[i].Next = r.Offset + 1
	}
	slices.SortFunc(spans, func(a, b Span) int {
		return compareTP(topicPartition{a.Topic, a.Partition}, topicPartition{b.Topic, b.Partition})
	})
	return spans, nil
}

// dbError returns err from the sink's own SQL: to retry when it is
// transient or ctx ended, fatal otherwise.
func (s *Sink[K, V]) dbError(ctx context.Context, what string, err error) error {
	err = fmt.Errorf("pgsink: %s: %w", what, err)
	if ctx.Err() != nil || pgsql.Transient(err) {
		return &retry{err}
	}
	return err
}
