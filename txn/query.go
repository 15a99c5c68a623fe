package txn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/topology"
)

// Interactive queries: what a key holds in one of the topology's stores,
// asked from outside the topology (an HTTP handler, a program's own
// code), from any goroutine while the worker runs.
//
// # Consistency
//
// A query reads the local committed state: what the last transaction
// that committed left in the task that holds the key, never a batch's
// pending writes. The worker's loop answers it between two batches, so
// it waits for the open batch to end (at most the commit interval, as a
// rule), and its answer may lag the latest commit by the batch that
// follows. A key's task is found as the topology's partitioner finds it:
// Kafka's default partitioner (murmur2) over the key's serialized bytes,
// among the partitions of the sub-topology's source topics.
//
// When another worker holds the key's task, the answer is that worker's
// advertised address (Config.AdvertiseAddr), learnt from the group
// coordinator; during a rebalance the task may move while the client
// follows it, and the next worker redirects again.

// QueryStatus says what a query found.
type QueryStatus int

const (
	// QueryFound: this worker holds the key's task, and the key has a
	// value (a key-value store), or the query's windows were read (a
	// window store: QueryResult.Windows, maybe none).
	QueryFound QueryStatus = iota + 1
	// QueryAbsent: this worker holds the key's task, and the key has
	// no value in the key-value store.
	QueryAbsent
	// QueryNotLocal: another worker holds the key's task;
	// QueryResult.Owner is its advertised address ("" when it
	// advertises none: QueryResult.Why says so).
	QueryNotLocal
	// QueryUnknownStore: the topology has no queryable store of that
	// name (QueryResult.Why lists those it has).
	QueryUnknownStore
	// QueryNotReady: the worker cannot answer now; QueryResult.Why says
	// why (not running, not in its group yet, restoring, a rebalance
	// under way, the key's task not open yet). Ask again later.
	QueryNotReady
)

func (s QueryStatus) String() string {
	switch s {
	case QueryFound:
		return "found"
	case QueryAbsent:
		return "absent"
	case QueryNotLocal:
		return "not local"
	case QueryUnknownStore:
		return "unknown store"
	case QueryNotReady:
		return "not ready"
	}
	return fmt.Sprintf("QueryStatus(%d)", int(s))
}

// QueryResult is the answer to a query.
type QueryResult struct {
	Status QueryStatus
	// Store is the store asked.
	Store string
	// Partition is the key's partition, which names its task among the
	// sub-topology's (-1 when the store is unknown).
	Partition int32
	// Value is the key's value in a key-value store, as JSON (QueryFound).
	Value json.RawMessage
	// Windows are the key's windows in a window store, oldest first
	// (QueryFound).
	Windows []QueryWindow
	// Owner is the advertised address of the worker that holds the key's
	// task (QueryNotLocal); OwnerInstance is its instance id ("" when it
	// has none).
	Owner, OwnerInstance string
	// Why explains a QueryNotReady, a QueryUnknownStore and a
	// QueryNotLocal without an Owner.
	Why string
}

// QueryWindow is one window of a key in a window store, with its value
// as JSON.
type QueryWindow struct {
	Start time.Time       `json:"start"`
	End   time.Time       `json:"end"`
	Value json.RawMessage `json:"value"`
}

// ErrBadQuery is wrapped by the error of a query that cannot be asked: a
// key the store's key serde cannot read, a window query of a key-value
// store or the other way round, an empty time range.
var ErrBadQuery = errors.New("txn: bad query")

// QueryableStores lists the topology's stores that answer queries,
// sorted by name (none when the topology is not a topology.Queryable).
// It is safe to call at any time.
func (w *Worker) QueryableStores() []topology.QueryableStore { return slices.Clone(w.qstores) }

// QueryKey returns the value of key in the key-value store called store,
// from the local committed state (see the Consistency notes above).
// key is the key's text, read by the store's key serde (its
// serde.TextParser, else its Decode of the text's bytes: a string key is
// itself, a JSON key its JSON text).
//
// The answer's Status says whether the value was found, is absent, lives
// on another worker (Owner) or cannot be told now. The error is for a
// query that cannot be asked (ErrBadQuery), a task whose state cannot be
// read, and a query the worker could not answer before ctx was done (it
// answers between batches). It is safe to call from any goroutine,
// before, during and after Run.
func (w *Worker) QueryKey(ctx context.Context, store, key string) (QueryResult, error) {
	return w.query(ctx, &queryRequest{store: store, kind: topology.KeyValueStore}, key)
}

// QueryWindows returns the windows of key in the window store called
// store whose start is in [from, to), oldest first, as QueryKey returns
// a value.
func (w *Worker) QueryWindows(ctx context.Context, store, key string, from, to time.Time) (QueryResult, error) {
	if !from.Before(to) {
		return QueryResult{Store: store, Partition: -1}, fmt.Errorf("%w: store %s: the time range [%v, %v) is empty", ErrBadQuery, store, from, to)
	}
	return w.query(ctx, &queryRequest{store: store, kind: topology.WindowStore, from: from, to: to}, key)
}

// queryRoute is where the keys of one sub-topology's stores live: their
// task's partition among the partitions of its source topics.
type queryRoute struct {
	topics     []string
	partitions int
	byKey      kgo.TopicPartitioner
}

// newQueryRoutes returns the routes of topo's sub-topologies, partitions
// holding every topic's partition count.
func newQueryRoutes(topo topology.Topology, partitions map[string]int32) map[int]queryRoute {
	routes := map[int]queryRoute{}
	for _, sub := range topo.Subtopologies() {
		if len(sub.SourceTopics) == 0 {
			continue
		}
		r := queryRoute{topics: sub.SourceTopics, byKey: kgo.StickyKeyPartitioner(nil).ForTopic(sub.SourceTopics[0])}
		for _, t := range sub.SourceTopics {
			r.partitions = max(r.partitions, int(partitions[t]))
		}
		routes[sub.ID] = r
	}
	return routes
}

// partition returns the partition of a serialized key, as Kafka's
// default partitioner gives it.
func (r queryRoute) partition(key []byte) int32 {
	return int32(r.byKey.Partition(&kgo.Record{Key: key}, r.partitions))
}

// query answers q for the key whose text is key: from the local task
// when this worker holds it, else with the owner the group knows.
func (w *Worker) query(ctx context.Context, q *queryRequest, key string) (QueryResult, error) {
	res := QueryResult{Store: q.store, Partition: -1}
	i := slices.IndexFunc(w.qstores, func(s topology.QueryableStore) bool { return s.Name == q.store })
	if i < 0 {
		res.Status, res.Why = QueryUnknownStore, w.unknownStore(q.store)
		return res, nil
	}
	qs := w.qstores[i]
	if qs.Kind != q.kind {
		hint := "a window query (from and to)"
		if qs.Kind == topology.KeyValueStore {
			hint = "a key query, with no time range"
		}
		return res, fmt.Errorf("%w: store %s is a %s store: ask it with %s", ErrBadQuery, q.store, qs.Kind, hint)
	}
	kb, err := qs.Key(key)
	if err != nil {
		return res, fmt.Errorf("%w: store %s: key %q: %w", ErrBadQuery, q.store, key, err)
	}
	routes := w.routes.Load()
	if routes == nil {
		res.Status, res.Why = QueryNotReady, "starting: the worker has not read its topics' partitions yet"
		return res, nil
	}
	route := (*routes)[qs.Subtopology]
	q.key, q.task = kb, topology.TaskID{Subtopology: qs.Subtopology, Partition: route.partition(kb)}
	res.Partition = q.task.Partition
	h := w.Health()
	cl := w.health.client.Load()
	if !h.Live || !h.Ready || cl == nil {
		res.Status, res.Why = QueryNotReady, h.Why
		if res.Why == "" {
			res.Why = "no session: starting, or re-creating it"
		}
		return res, nil
	}
	if held := w.held.Load(); held != nil && held.has(route.topics, q.task.Partition) {
		return w.askLoop(ctx, q, res)
	}
	return w.remote(ctx, cl, route, q, res)
}

// unknownStore says that the topology has no queryable store name, and
// which it has.
func (w *Worker) unknownStore(name string) string {
	if len(w.qstores) == 0 {
		return fmt.Sprintf("no store %s: the topology has no queryable store", name)
	}
	names := make([]string, len(w.qstores))
	for i, s := range w.qstores {
		names[i] = s.Name
	}
	return fmt.Sprintf("no store %s: the queryable stores are %s", name, strings.Join(names, ", "))
}

// askLoop hands q to the worker's loop, which answers it between two
// batches (serveQueries), and waits for the answer.
func (w *Worker) askLoop(ctx context.Context, q *queryRequest, res QueryResult) (QueryResult, error) {
	q.ctx, q.reply = ctx, make(chan queryReply, 1)
	select {
	case w.queries <- q:
	case <-ctx.Done():
		return res, w.notServed(q, ctx)
	}
	w.mu.Lock()
	if w.wake != nil {
		w.wake() // an idle loop polls no longer
	}
	w.mu.Unlock()
	var r queryReply
	select {
	case r = <-q.reply:
	case <-ctx.Done():
		return res, w.notServed(q, ctx)
	}
	switch {
	case r.err != nil:
		return res, r.err
	case r.why != "":
		res.Status, res.Why = QueryNotReady, r.why
	case q.kind == topology.WindowStore:
		res.Status = QueryFound
		res.Windows = make([]QueryWindow, len(r.windows))
		for i, wv := range r.windows {
			res.Windows[i] = QueryWindow{Start: wv.Start, End: wv.End, Value: wv.Value}
		}
	case r.found:
		res.Status, res.Value = QueryFound, r.value
	default:
		res.Status = QueryAbsent
	}
	return res, nil
}

func (w *Worker) notServed(q *queryRequest, ctx context.Context) error {
	return fmt.Errorf("txn: query of store %s, task %s: the worker did not get to it between its batches in time: %w", q.store, taskName(q.task), context.Cause(ctx))
}

// remote answers q, whose task this worker does not hold, with the
// member the group assigned it to.
func (w *Worker) remote(ctx context.Context, cl *kgo.Client, route queryRoute, q *queryRequest, res QueryResult) (QueryResult, error) {
	task := taskName(q.task)
	owner, ok, err := w.dir.owner(ctx, cl, route.topics, q.task.Partition)
	var reb errRebalancing
	switch {
	case errors.As(err, &reb):
		res.Status, res.Why = QueryNotReady, fmt.Sprintf("task %s: %v", task, err)
		return res, nil
	case err != nil:
		res.Status, res.Why = QueryNotReady, fmt.Sprintf("task %s: cannot tell which worker holds it: %v", task, err)
		return res, nil
	case !ok:
		res.Status, res.Why = QueryNotReady, fmt.Sprintf("task %s: no worker holds it now (a rebalance is moving it)", task)
		return res, nil
	}
	if self, _ := cl.GroupMetadata(); owner.memberID == self {
		res.Status, res.Why = QueryNotReady, fmt.Sprintf("task %s: the group assigns it to this worker, which has not taken it yet (a rebalance is under way)", task)
		return res, nil
	}
	res.Status, res.Owner, res.OwnerInstance = QueryNotLocal, owner.addr, owner.instance
	if owner.addr == "" {
		res.Why = fmt.Sprintf("task %s is held by %s, which advertises no address: start it with --advertise-addr (txn.Config.AdvertiseAddr)", task, owner.describe())
	}
	return res, nil
}
