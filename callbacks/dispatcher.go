package callbacks

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
)

// DispatcherOption configures a [Dispatcher].
type DispatcherOption func(*Dispatcher)

// WithLogger sets the logger that records panics recovered from callbacks and
// ignored transitions. nil, the default, means [slog.Default] at the time
// NewDispatcher is called.
func WithLogger(l *slog.Logger) DispatcherOption {
	return func(d *Dispatcher) { d.log = l }
}

// WithPanicHandler sets fn to be called for every panic recovered from a
// callback, right after it was logged, on the goroutine that panicked and
// before anything else happens there: an elector uses it to end the term of
// an OnElected that panicked at once, rather than when the term would have
// ended anyway. fn must not block for long and must not call Elected, Lost
// or Close.
func WithPanicHandler(fn func(Panic)) DispatcherOption {
	return func(d *Dispatcher) { d.onPanic = fn }
}

// WithBeforeLost sets fn to be called once per term by Lost and Close, after
// OnElected has returned (or panicked) and before OnLost is queued, on the
// goroutine that called Lost or Close. An elector settles the leadership
// there (releases the key), so that a standby can only win once this term's
// work has stopped, and OnLost learns of a settled term.
func WithBeforeLost(fn func(Term)) DispatcherOption {
	return func(d *Dispatcher) { d.beforeLost = fn }
}

// Panic is a panic recovered from a callback.
type Panic struct {
	// Callback is "OnElected", "OnLost" or "OnNewLeader".
	Callback string
	// Term is the term of an OnElected or OnLost call; zero for OnNewLeader.
	Term Term
	// Value is what the callback panicked with.
	Value any
	// Stack is the stack of the goroutine that panicked, as debug.Stack
	// printed it where the panic was recovered.
	Stack []byte
}

// Dispatcher delivers an elector's transitions to a [Callbacks] set and
// enforces their contract (see the package documentation): OnLost exactly
// once after each OnElected and only after it returned, OnLost and
// OnNewLeader one at a time and in order, panics recovered and logged.
//
// The elector calls Elected and Lost from its campaign loop and NewLeader from
// wherever it observes the leader; Close when it stops. A Dispatcher is
// nevertheless safe for concurrent use by any number of goroutines: Elected,
// Lost and Close are serialised, so a term's OnLost always returns before the
// next term's OnElected starts.
//
// Callbacks may call NewLeader and Active on their own dispatcher, but must not
// call Elected, Lost or Close on it: those wait for callbacks, and would wait
// for themselves.
//
// Close must be called once the Dispatcher is no longer needed: it ends the
// active term and joins every goroutine the Dispatcher started.
type Dispatcher struct {
	cb         Callbacks
	log        *slog.Logger
	onPanic    func(Panic) // optional, see WithPanicHandler
	beforeLost func(Term)  // optional, see WithBeforeLost

	// termMu serialises Elected, Lost and Close, so that ending a term
	// (cancel, wait, OnLost) completes before anything else starts or ends one.
	termMu sync.Mutex

	// wg counts the callback goroutine; Close waits for it. The goroutines
	// running OnElected are joined through activeTerm.done instead.
	wg sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	closed   bool       // set by Close; NewLeader, Elected and Lost are then no-ops
	active   *activeTerm
	last     Leader   // last leader queued for OnNewLeader
	haveLast bool     // whether last is set: the first observation is always reported
	queue    []func() // OnNewLeader and OnLost calls waiting for the callback goroutine
	running  bool     // whether the callback goroutine is running
}

// activeTerm is the term between Elected and Lost.
type activeTerm struct {
	term   Term
	cancel context.CancelFunc
	done   chan struct{} // closed when OnElected has returned or panicked
}

// NewDispatcher returns a Dispatcher that delivers transitions to cb. A nil
// OnElected is treated as a function that returns at once; validate cb with
// [Callbacks.Validate] first if that is a mistake for the caller.
//
// The Dispatcher starts goroutines only while it has work: one per active
// term for OnElected and one to run queued OnLost and OnNewLeader calls.
// [Dispatcher.Close] joins them all.
func NewDispatcher(cb Callbacks, opts ...DispatcherOption) *Dispatcher {
	d := &Dispatcher{cb: cb}
	for _, opt := range opts {
		opt(d)
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	return d
}

// Elected starts a term: it runs OnElected(ctx, term) in a new goroutine owned
// by the dispatcher and returns without waiting for it. ctx is cancelled by
// Lost or Close.
//
// Elected is ignored (and logged at Warn) while another term is active, since
// a process cannot win an election it already holds; it is a no-op after
// Close. If a Lost runs concurrently, Elected waits for it to finish.
func (d *Dispatcher) Elected(term Term) {
	d.termMu.Lock()
	defer d.termMu.Unlock()

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	if prev := d.active; prev != nil {
		d.mu.Unlock()
		d.log.Warn("callbacks: Elected ignored: a term is already active",
			"name", term.Name, "identity", term.Identity, "fence", term.Fence,
			"active_fence", prev.term.Fence)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	at := &activeTerm{term: term, cancel: cancel, done: make(chan struct{})}
	d.active = at
	d.mu.Unlock()

	go d.runElected(ctx, at)
}

func (d *Dispatcher) runElected(ctx context.Context, at *activeTerm) {
	defer close(at.done)
	if d.cb.OnElected == nil {
		return
	}
	// Chain's OnElected reports the panic of one of its functions at once
	// through ctx, not only once all of them have returned.
	ctx = context.WithValue(ctx, reporterKey{}, reporter(func(p recovered) { d.report("OnElected", at.term, p) }))
	d.protect("OnElected", at.term, func() { d.cb.OnElected(ctx, at.term) })
}

// Lost ends the active term: it cancels the term's ctx, waits for OnElected
// to return, then runs OnLost(term) after every OnNewLeader queued before it,
// and returns once OnLost has returned. The term stops being [Dispatcher.Active]
// as soon as Lost begins.
//
// Lost is a no-op when no term is active, so a second Lost for the same term,
// or a Lost without Elected, never calls OnLost. Lost blocks for as long as
// OnElected ignores its ctx.
func (d *Dispatcher) Lost() {
	d.termMu.Lock()
	defer d.termMu.Unlock()
	d.endTerm()
}

// endTerm ends the active term, if any. d.termMu must be held.
func (d *Dispatcher) endTerm() {
	d.mu.Lock()
	at := d.active
	d.active = nil
	d.mu.Unlock()
	if at == nil {
		return
	}

	at.cancel()
	<-at.done
	if d.beforeLost != nil {
		d.beforeLost(at.term)
	}
	if d.cb.OnLost == nil {
		return
	}
	lostDone := make(chan struct{})
	d.mu.Lock()
	d.enqueueLocked(func() {
		defer close(lostDone)
		d.protect("OnLost", at.term, func() { d.cb.OnLost(at.term) })
	})
	d.mu.Unlock()
	<-lostDone
}

// NewLeader queues OnNewLeader(l) and returns without waiting for it. Calls
// run in the order NewLeader was called, one at a time, on the dispatcher's
// callback goroutine.
//
// l is dropped when it describes the same leadership as the last leader queued
// (same Identity and Fence; TTL is ignored; any two "no leader" values are the
// same), so OnNewLeader sees changes only. The first leader after
// NewDispatcher is always reported, even when it is "no leader". The queue has
// no bound: a slow OnNewLeader lets it grow by one entry per change.
//
// NewLeader is a no-op once Close has begun.
func (d *Dispatcher) NewLeader(l Leader) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || (d.haveLast && d.last.Same(l)) {
		return
	}
	d.last, d.haveLast = l, true
	if d.cb.OnNewLeader == nil {
		return
	}
	d.enqueueLocked(func() {
		d.protect("OnNewLeader", Term{}, func() { d.cb.OnNewLeader(l) })
	})
}

// Close ends the active term as Lost does (OnLost fires), runs every queued
// OnNewLeader, and returns once every goroutine the dispatcher started has
// exited. Close is idempotent: a second call returns once the first has
// finished. After Close, Elected, Lost and NewLeader are no-ops.
func (d *Dispatcher) Close() {
	d.termMu.Lock()
	defer d.termMu.Unlock()

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()

	d.endTerm()
	// Nothing can be queued any more: NewLeader sees closed, and only endTerm,
	// under termMu, queues anything else.
	d.wg.Wait()
}

// Active returns the active term and true, or the zero Term and false when no
// term is active. A term is active from Elected until Lost or Close begins.
func (d *Dispatcher) Active() (Term, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active == nil {
		return Term{}, false
	}
	return d.active.term, true
}

// enqueueLocked appends task to the queue and starts the callback goroutine
// if it is not running. d.mu must be held.
func (d *Dispatcher) enqueueLocked(task func()) {
	d.queue = append(d.queue, task)
	if !d.running {
		d.running = true
		d.wg.Go(d.work)
	}
}

// work runs queued tasks in order until the queue is empty.
func (d *Dispatcher) work() {
	for {
		d.mu.Lock()
		if len(d.queue) == 0 {
			d.running = false
			d.queue = nil // release the backing array between bursts
			d.mu.Unlock()
			return
		}
		task := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.mu.Unlock()
		task()
	}
}

// protect runs fn, recovering a panic in callback name and reporting it
// (report) before returning: logged and handed to the panic handler, on the
// goroutine that panicked.
func (d *Dispatcher) protect(name string, term Term, fn func()) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		for _, p := range capturePanic(r) {
			if !p.reported {
				d.report(name, term, p)
			}
		}
	}()
	fn()
}

// report logs a recovered panic at once, with its stack, and hands it to the
// panic handler.
func (d *Dispatcher) report(name string, term Term, p recovered) {
	d.log.Error("callbacks: callback panicked",
		"callback", name, "name", term.Name, "identity", term.Identity,
		"fence", term.Fence, "panic", p.value, "stack", string(p.stack))
	if d.onPanic != nil {
		d.onPanic(Panic{Callback: name, Term: term, Value: p.value, Stack: p.stack})
	}
}

// reporter reports a panic recovered inside a callback at once; the
// dispatcher hands one to OnElected through its ctx (reporterKey).
type reporter func(recovered)

type reporterKey struct{}

// recovered is one panic value and the stack of the goroutine that panicked.
type recovered struct {
	value    any
	stack    []byte
	reported bool // already reported through a reporter: not again
}

// panics is what [Chain] re-panics with after recovering panics in the
// functions it combines, so the dispatcher can log each with its own stack.
type panics []recovered

// String makes the runtime print every value if nothing recovers the panic.
func (ps panics) String() string {
	s := "callbacks: panic in chained callbacks:"
	for _, p := range ps {
		s += "\n" + fmt.Sprint(p.value) + "\n" + string(p.stack)
	}
	return s
}

// capturePanic turns a value returned by recover into panics; it must be
// called in the deferred function that recovered, so debug.Stack still shows
// where the panic happened.
func capturePanic(r any) panics {
	if ps, ok := r.(panics); ok {
		return ps
	}
	return panics{{value: r, stack: debug.Stack()}}
}
