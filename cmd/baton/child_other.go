//go:build !linux

package main

import "errors"

// waitWithoutReaping is not available here: leftovers of a finished command
// are not killed.
func waitWithoutReaping(int) error { return errors.ErrUnsupported }
