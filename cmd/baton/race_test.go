//go:build race

package main

// raceEnabled makes TestMain build baton with the race detector too.
const raceEnabled = true
