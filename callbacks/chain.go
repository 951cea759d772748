package callbacks

import (
	"context"
	"sync"
)

// Chain combines several sets of callbacks into one, so that a program can
// add adapters such as [ExitOnLost] to its own set.
//
//   - OnElected runs every set's OnElected concurrently, each in its own
//     goroutine, and returns when all have returned. They share one ctx,
//     derived from the term's: it is cancelled when the term ends and also when
//     one of them panics, since a panic ends the term's work. Under a
//     Dispatcher a panic is logged (and the elector told) at once; the panics
//     are re-raised together once all have returned. With a single
//     OnElected, it is called directly.
//   - OnLost and OnNewLeader call every set's function in the order given.
//     A panic in one does not stop the others; the panics are re-raised
//     together after the last one ran. Place [ExitOnLost] last: nothing after
//     it runs.
//
// Nil functions are skipped; a field is nil in the result when it is nil in
// every set, so Chain() with no OnElected fails [Callbacks.Validate]. Chain
// keeps its own copy of sets. The result is safe for concurrent use when the
// combined functions are.
func Chain(sets ...Callbacks) Callbacks {
	var (
		elected   []func(context.Context, Term)
		lost      []func(Term)
		newLeader []func(Leader)
	)
	for _, s := range sets {
		if s.OnElected != nil {
			elected = append(elected, s.OnElected)
		}
		if s.OnLost != nil {
			lost = append(lost, s.OnLost)
		}
		if s.OnNewLeader != nil {
			newLeader = append(newLeader, s.OnNewLeader)
		}
	}

	var out Callbacks
	switch len(elected) {
	case 0:
	case 1:
		out.OnElected = elected[0]
	default:
		out.OnElected = func(ctx context.Context, term Term) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var (
				wg sync.WaitGroup
				mu sync.Mutex
				ps panics // guarded by mu
			)
			for _, f := range elected {
				wg.Go(func() {
					defer func() {
						if r := recover(); r != nil {
							p := capturePanic(r)
							if report, ok := ctx.Value(reporterKey{}).(reporter); ok {
								// Logged now, and the term ended, not
								// once every sibling has returned.
								for i := range p {
									if !p[i].reported {
										report(p[i])
										p[i].reported = true
									}
								}
							}
							mu.Lock()
							ps = append(ps, p...)
							mu.Unlock()
							cancel()
						}
					}()
					f(ctx, term)
				})
			}
			wg.Wait()
			if len(ps) > 0 {
				panic(ps)
			}
		}
	}
	if len(lost) > 0 {
		out.OnLost = func(term Term) {
			callAll(lost, term)
		}
	}
	if len(newLeader) > 0 {
		out.OnNewLeader = func(l Leader) {
			callAll(newLeader, l)
		}
	}
	return out
}

// callAll calls every f with arg in order, then re-raises any panics together.
func callAll[T any](fs []func(T), arg T) {
	var ps panics
	for _, f := range fs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					ps = append(ps, capturePanic(r)...)
				}
			}()
			f(arg)
		}()
	}
	if len(ps) > 0 {
		panic(ps)
	}
}
