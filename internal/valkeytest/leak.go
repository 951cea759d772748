package valkeytest

import "go.uber.org/goleak"

// LeakOptions returns the goleak options a package needs to verify its
// goroutines when it uses a Cluster client. After a topology refresh that
// drops a node, as after KillPrimary, valkey-go v1.0.79 closes the dropped
// connections from a goroutine that sleeps 5 s first and that Client.Close
// does not stop, so it can outlive every test by up to 5 s:
//
//	goleak.VerifyTestMain(m, valkeytest.LeakOptions()...)
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valkey-io/valkey-go.(*clusterClient)._refresh.func2"),
	}
}
