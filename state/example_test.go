package state_test

import (
	"fmt"
	"log"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
)

// printLog is a Changelog that prints each record instead of producing it
// into a Kafka transaction.
type printLog struct{}

func (printLog) Append(topic string, key, value []byte) {
	fmt.Printf("changelog %s: %s=%x\n", topic, key, value)
}

// A task's state through one transaction: writes are pending until the
// Kafka transaction commits, then committed with the checkpoint. A
// reopened database, and ReadCheckpoint, find the checkpoint beside the
// writes it covers.
func Example() {
	fs := vfs.NewMem() // in memory: vfs.Default, the default, for disk
	db, err := state.Open("0_0", state.Options{FS: fs})
	if err != nil {
		log.Fatal(err)
	}
	counts, err := state.NewKeyValue(db, "counts", "app-counts-changelog", printLog{}, serde.String, serde.Int64)
	if err != nil {
		log.Fatal(err)
	}

	// Processing a record: the write goes to the pending writes, and its
	// changelog record to the open transaction.
	if err := counts.Put("alice", 3); err != nil {
		log.Fatal(err)
	}
	// The Kafka transaction committed; its changelog record's offset was
	// 41, so a restore replays from 42.
	cp := state.Checkpoint{Offsets: map[string]int64{"app-counts-changelog": 42}, StreamTime: 1_700_000_000_000}
	if err := db.Commit(cp); err != nil {
		log.Fatal(err)
	}
	n, found, err := counts.Get("alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alice:", n, found)
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}

	// A restart reads the checkpoint to know where to replay from.
	db, err = state.Open("0_0", state.Options{FS: fs})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("reopened:", db.Checkpoint().Offsets)
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
	// A tool reads it without opening the database for writing.
	read, err := state.ReadCheckpoint("0_0", state.Options{FS: fs})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("read-only:", read.Offsets, read.StreamTime)
	// Output:
	// changelog app-counts-changelog: alice=0000000000000003
	// alice: 3 true
	// reopened: map[app-counts-changelog:42]
	// read-only: map[app-counts-changelog:42] 1700000000000
}
