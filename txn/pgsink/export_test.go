package pgsink

// SetBeforeBegin makes s call f after a batch is polled and decoded,
// before its transaction begins.
func SetBeforeBegin[K, V any](s *Sink[K, V], f func(spans []Span)) { s.beforeBegin = f }
