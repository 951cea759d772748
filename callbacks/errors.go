package callbacks

import "errors"

// ErrNoOnElected is returned by [Callbacks.Validate] when OnElected is nil:
// an elector without work for its leader is almost always a wiring mistake.
var ErrNoOnElected = errors.New("callbacks: OnElected is required")
