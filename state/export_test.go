package state

// SetApplyHook makes every later apply of d call f on its goroutine before
// it writes; an error from f fails the apply.
func SetApplyHook(d *DB, f func() error) { d.applyHook = f }
