package election

import "errors"

// Sentinel errors, tested with errors.Is.
var (
	// ErrRunning is returned by Run when another Run of the same Elector has
	// not returned yet: one Elector campaigns once at a time.
	ErrRunning = errors.New("election: already running")

	// ErrResigned is the cause (context.Cause) of OnElected's ctx when the
	// term ended because Resign was called.
	ErrResigned = errors.New("election: resigned")

	// ErrStopped is the cause of OnElected's ctx when the term ended because
	// Run's ctx ended, or Run stopped on a permanent error or a panic.
	ErrStopped = errors.New("election: stopped")

	// ErrPanicked is the cause of OnElected's ctx when the term ended because
	// OnElected panicked (a goroutine of a Chain, say): the panic was logged
	// with its stack when it happened. When the leadership was lost instead,
	// the cause is the lease's error, which wraps lease.ErrLost and its
	// reason (lock.ErrNotOwned, lease.ErrExpired, lock.ErrMisconfigured).
	ErrPanicked = errors.New("election: OnElected panicked")

	// ErrNotRenewing is returned by Healthy when this process leads but its
	// last successful renewal is older than the silence allowed: its
	// leadership may already have passed to another candidate.
	ErrNotRenewing = errors.New("election: leader has not renewed")
)
