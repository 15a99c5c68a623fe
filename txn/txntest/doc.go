// Package txntest holds what tests, the demos and the benchmarks need to
// check the runtime's output against a broker: a producer of
// sequence-numbered records, read_committed verifiers that find every
// sequence number that was lost or duplicated (each reads with large and
// with small fetches, and fails when the two disagree), and a reader of
// a changelog's latest values. It imports neither the DSL (package
// stream) nor the runtime. The broker itself is package broker.
package txntest
