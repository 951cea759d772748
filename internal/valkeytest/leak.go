package valkeytest

import "go.uber.org/goleak"

// LeakOptions returns the goleak options a package needs to verify its
// goroutines when it uses a Cluster client through a fault. valkey-go v1.0.79
// starts two goroutines that Client.Close does not stop and that end on
// their own: after a command fails, one sleeps up to 1 s before it refreshes
// the slot map, and after a refresh that drops a node, as after KillPrimary,
// one sleeps 5 s before it closes the dropped connections. Either can
// outlive the last test:
//
//	goleak.VerifyTestMain(m, valkeytest.LeakOptions()...)
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valkey-io/valkey-go.(*call).DelayDo.func1"),
		goleak.IgnoreAnyFunction("github.com/valkey-io/valkey-go.(*clusterClient)._refresh.func2"),
	}
}
