// Package pgsql holds what the Postgres sink (txn/pgsink) and the outbox
// relay (txn/outbox) both need of Postgres beyond pgx: quoting a table
// name given as name or schema.name, and telling an error that a new
// attempt may not meet from one that will recur.
package pgsql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TableIdent returns the quoted identifier of a table name given as name
// or schema.name, with suffix added to the name ("" for none). A name
// with more than two parts or an empty part is an error naming it.
func TableIdent(name, suffix string) (string, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 || slices.Contains(parts, "") {
		return "", fmt.Errorf("table name %q: want name or schema.name", name)
	}
	parts[len(parts)-1] += suffix
	return pgx.Identifier(parts).Sanitize(), nil
}

// Transient reports whether err is one that a new attempt, on a new
// connection if need be, may not meet: the connection failed or was
// ended (a restarted server, an idle transaction ended by
// idle_in_transaction_session_timeout), the server is shutting down or
// out of resources, Postgres rolled the transaction back for a conflict
// (serialization failure, deadlock), a lock was not available, or the
// context's deadline passed. nil is not transient.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case strings.HasPrefix(pe.Code, "40"), // transaction rollback: serialization, deadlock
			strings.HasPrefix(pe.Code, "08"),  // connection exception
			strings.HasPrefix(pe.Code, "53"),  // insufficient resources (too many connections)
			strings.HasPrefix(pe.Code, "57P"), // operator intervention: shutdown, crash
			pe.Code == "25P03",                // idle_in_transaction_session_timeout
			pe.Code == "55P03":                // lock not available
			return true
		}
		return false
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded)
}
