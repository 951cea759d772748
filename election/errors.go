package election

import "errors"

// Sentinel errors, tested with errors.Is.
var (
	// ErrRunning is returned by Run when another Run of the same Elector has
	// not returned yet: one Elector campaigns once at a time.
	ErrRunning = errors.New("election: already running")

	// ErrNotRenewing is returned by Healthy when this process leads but its
	// last successful renewal is older than the silence allowed: its
	// leadership may already have passed to another candidate.
	ErrNotRenewing = errors.New("election: leader has not renewed")
)
