package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
)

// Table is an outbox table: where applications write the messages the
// relay produces to Kafka, each in the database transaction of the
// business change it announces.
//
// # Schema
//
// DDL returns the table's definition. Each row is one message:
//
//	xid           xid8 NOT NULL DEFAULT pg_current_xact_id()  -- the writing transaction
//	seq           bigserial                                   -- the order within it
//	topic         text         -- NULL: the relay's Config.Topic
//	key, value    bytea        -- the record's key and value (NULL: none)
//	header_keys   text[]       -- the record's headers, pairwise
//	header_values bytea[]
//	created_at    timestamptz NOT NULL DEFAULT now()  -- the record's timestamp
//	PRIMARY KEY (xid, seq)
//
// Writers leave xid, seq and created_at to their defaults: the relay's
// order and its never skipping a row rest on xid being the writing
// transaction's id. Write does this.
//
// # Key order
//
// The relay delivers rows in (xid, seq) order. Transaction ids are given
// out when a transaction first writes, not when it commits, so two
// transactions that write the same key at once can commit in the other
// order than their ids: a transaction that took its id early (another
// write first) and wrote the key after a younger one committed its own
// message for it would be delivered before that younger one. When
// KeyOrder is set, Write refuses such a write: it keeps, in a second
// table (the outbox table's name + "_keys"), the id of the last
// transaction that wrote each (topic, key), and a transaction whose id
// is lower than that of one that already wrote the key gets a
// *KeyOrderError (roll back and run the transaction again: it gets a
// new, higher id). A transaction that waits on another writing the same
// key (the key's row lock) goes on once that one has committed or
// rolled back. The relay removes the entries of the keys it has relayed
// (set Config.KeyOrder). Without KeyOrder, per-key order is commit order
// whenever a key's transactions do not overlap in time, e.g. when one
// writer at a time writes a key and waits for its commit.
type Table struct {
	// Name is the table's name or schema.name. Default DefaultTable.
	Name string
	// KeyOrder makes Write check that each key's messages are written in
	// the order of their transactions' ids (see the type's
	// documentation). The relay must be told too (Config.KeyOrder).
	KeyOrder bool
}

func (t Table) name() string {
	if t.Name == "" {
		return DefaultTable
	}
	return t.Name
}

// DDL returns the statements that create the table (and with KeyOrder its
// key table) when missing: CREATE TABLE IF NOT EXISTS, separated by
// semicolons, to run as one string (Exec with no arguments) or to copy
// into a migration. It fails only on a name that is not name or
// schema.name.
func (t Table) DDL() (string, error) {
	tbl, err := tableIdent(t.name(), "")
	if err != nil {
		return "", err
	}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	xid           xid8        NOT NULL DEFAULT pg_current_xact_id(),
	seq           bigserial   NOT NULL,
	topic         text,
	key           bytea,
	value         bytea,
	header_keys   text[],
	header_values bytea[],
	created_at    timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (xid, seq)
)`, tbl)
	if t.KeyOrder {
		keys, _ := tableIdent(t.name(), "_keys")
		index, _ := tableIdent(lastPart(t.name())+"_keys_xid", "")
		ddl += fmt.Sprintf(`;
CREATE TABLE IF NOT EXISTS %s (
	topic text  NOT NULL,
	key   bytea NOT NULL,
	xid   xid8  NOT NULL,
	PRIMARY KEY (topic, key)
);
CREATE INDEX IF NOT EXISTS %s ON %s (xid)`, keys, index, keys)
	}
	return ddl, nil
}

// lastPart returns the table name of name or schema.name.
func lastPart(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			return name[i+1:]
		}
	}
	return name
}

// Create runs DDL in a transaction of db (a pool, a connection or an open
// transaction), under an advisory lock so that relays and applications
// that start at once do not trip over each other's CREATE TABLE IF NOT
// EXISTS.
func (t Table) Create(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}) error {
	ddl, err := t.DDL()
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('sluice.outbox.schema'))"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, ddl)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: creating the outbox table %s: %w", t.name(), err)
	}
	return nil
}

// Message is one outbox row: a record for the relay to produce.
type Message struct {
	// Topic is the record's topic; "" leaves the column NULL, for the
	// relay's Config.Topic.
	Topic string
	// Key and Value are the record's; nil is NULL (no key, a null value).
	Key, Value []byte
	// Headers are the record's headers, in order.
	Headers []kgo.RecordHeader
}

// Write inserts msgs into the table inside tx, the application's own
// transaction: they are relayed if and only if tx commits, in the order
// given, after every message of the transactions with lower ids. It does
// not commit tx. Several messages go in one round trip.
//
// With KeyOrder, it first records each keyed message's (topic, key) with
// tx's id, waiting for a transaction that wrote the same key and has not
// ended yet; it returns a *KeyOrderError when a transaction with a higher
// id already wrote one of the keys (roll tx back and run it again).
func (t Table) Write(ctx context.Context, tx pgx.Tx, msgs ...Message) error {
	tbl, err := tableIdent(t.name(), "")
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	var keyed []Message
	if t.KeyOrder {
		keys, _ := tableIdent(t.name(), "_keys")
		claim := fmt.Sprintf(`INSERT INTO %[1]s AS k (topic, key, xid) VALUES ($1, $2, pg_current_xact_id())
			ON CONFLICT (topic, key) DO UPDATE SET xid = EXCLUDED.xid WHERE k.xid <= EXCLUDED.xid`, keys)
		for _, m := range msgs {
			if m.Key != nil {
				keyed = append(keyed, m)
				b.Queue(claim, m.Topic, m.Key)
			}
		}
	}
	insert := fmt.Sprintf(`INSERT INTO %s (topic, key, value, header_keys, header_values) VALUES ($1, $2, $3, $4, $5)`, tbl)
	for _, m := range msgs {
		var topic *string
		if m.Topic != "" {
			topic = &m.Topic
		}
		var hk []string
		var hv [][]byte
		if len(m.Headers) > 0 {
			hk, hv = make([]string, len(m.Headers)), make([][]byte, len(m.Headers))
			for i, h := range m.Headers {
				hk[i], hv[i] = h.Key, h.Value
			}
		}
		b.Queue(insert, topic, m.Key, m.Value, hk, hv)
	}
	br := tx.SendBatch(ctx, b)
	for _, m := range keyed {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return fmt.Errorf("outbox: recording key %q of topic %q in %s_keys: %w", m.Key, m.Topic, t.name(), err)
		}
		if tag.RowsAffected() == 0 {
			br.Close()
			return &KeyOrderError{Table: t.name(), Topic: m.Topic, Key: m.Key}
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("outbox: writing %d messages to %s: %w", len(msgs), t.name(), err)
	}
	return nil
}

// Writer writes typed messages to one topic through an outbox table,
// encoding keys and values with the DSL's serdes. It is safe for
// concurrent use when its serdes are.
type Writer[K, V any] struct {
	table Table
	topic string
	key   serde.Serde[K]
	value serde.Serde[V]
}

// NewWriter returns a Writer of messages for topic ("" for the relay's
// Config.Topic) into table, encoded with key and value.
func NewWriter[K, V any](table Table, topic string, key serde.Serde[K], value serde.Serde[V]) *Writer[K, V] {
	return &Writer[K, V]{table: table, topic: topic, key: key, value: value}
}

// Write encodes key and value and writes them, with headers, inside tx
// (see Table.Write).
func (w *Writer[K, V]) Write(ctx context.Context, tx pgx.Tx, key K, value V, headers ...kgo.RecordHeader) error {
	k, err := w.key.Encode(key)
	if err != nil {
		return fmt.Errorf("outbox: encoding a key for %s: %w", w.topic, err)
	}
	v, err := w.value.Encode(value)
	if err != nil {
		return fmt.Errorf("outbox: encoding a value for %s: %w", w.topic, err)
	}
	return w.table.Write(ctx, tx, Message{Topic: w.topic, Key: k, Value: v, Headers: headers})
}
