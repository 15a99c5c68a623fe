package outbox

import "strings"

// Stages of a batch, for SetHook.
const (
	StageRead     = "read"     // rows read, before the transaction begins
	StageProduced = "produced" // rows and cursor flushed, before EndTxn
	StageCommit   = "commit"   // just before EndTxn(commit) is sent
	StageDone     = "done"     // committed
)

// Batch describes a batch to a hook.
type Batch = batchInfo

// SetHook makes r call f at each stage of each transaction (rows is 0
// for a session's claim). Set it before Run.
func SetHook(r *Relay, f func(stage string, b Batch)) {
	names := map[stage]string{stageRead: StageRead, stageProduced: StageProduced, stageCommit: StageCommit, stageDone: StageDone}
	r.hook = func(s stage, b batchInfo) { f(names[s], b) }
}

// SetNoHorizon makes r read without the xmin horizon: what the horizon
// prevents can then be seen. Set it before Run.
func SetNoHorizon(r *Relay) {
	r.read = strings.Replace(r.read, "AND xid < pg_snapshot_xmin(pg_current_snapshot())", "", 1)
}
