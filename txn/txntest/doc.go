// Package txntest holds what tests, the demos and the benchmarks need to
// check the runtime's output against a broker: a producer of
// sequence-numbered records, read_committed verifiers that find every
// sequence number that was lost or duplicated, and a stateful sum topology
// with its expected result. The broker itself is package broker.
package txntest
