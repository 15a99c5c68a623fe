package pgserver_test

import (
	"context"
	"os"
	"testing"

	"github.com/sluicehq/sluice/txn/pgserver"
)

// A server of its own starts, serves and stops, leaving no directory.
func TestStartStop(t *testing.T) {
	ctx := context.Background()
	s, err := pgserver.Start(ctx, pgserver.Options{Settings: map[string]string{"work_mem": "8MB"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDB(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", s.Dir, err)
	}
	if err := s.CreateDB(ctx, "two"); err == nil {
		t.Fatal("a stopped server took a CREATE DATABASE")
	}
}
