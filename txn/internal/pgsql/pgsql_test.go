package pgsql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestTableIdent(t *testing.T) {
	for _, c := range []struct{ name, suffix, want string }{
		{"sluice_outbox", "", `"sluice_outbox"`},
		{"app.outbox", "_keys", `"app"."outbox_keys"`},
		{`we"ird`, "", `"we""ird"`},
	} {
		got, err := TableIdent(c.name, c.suffix)
		if err != nil || got != c.want {
			t.Errorf("TableIdent(%q, %q) = %s, %v; want %s", c.name, c.suffix, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "a.b.c", ".t", "s."} {
		if _, err := TableIdent(bad, ""); err == nil {
			t.Errorf("TableIdent(%q): no error", bad)
		} else if want := fmt.Sprintf("table name %q: want name or schema.name", bad); err.Error() != want {
			t.Errorf("TableIdent(%q): %v, want %s", bad, err, want)
		}
	}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("constraint"), false},
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation
		{&pgconn.PgError{Code: "42P01"}, false}, // undefined table
		{&pgconn.PgError{Code: "40001"}, true},  // serialization failure
		{&pgconn.PgError{Code: "40P01"}, true},  // deadlock
		{&pgconn.PgError{Code: "08006"}, true},  // connection failure
		{&pgconn.PgError{Code: "53300"}, true},  // too many connections
		{&pgconn.PgError{Code: "57P01"}, true},  // admin shutdown
		{&pgconn.PgError{Code: "25P03"}, true},  // idle in transaction timeout
		{&pgconn.PgError{Code: "55P03"}, true},  // lock not available
		{fmt.Errorf("write: %w", &pgconn.PgError{Code: "40001"}), true},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("read: %w", io.EOF), true},
		{context.DeadlineExceeded, true},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
