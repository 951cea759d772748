// Command bench runs baton and its peers side by side on one valkey-server
// that it starts itself, and prints the results as markdown.
//
//	cd bench && go run .                              # print the tables
//	cd bench && go run . -write ../docs/benchmarks.md  # and rewrite the peers section
//
// Every implementation is driven through the same small interface (impl) in
// the same process against the same server; an instance of an impl (its own
// client, connections and lock objects) stands for one process. Each
// scenario runs a few rounds and, within a round, every implementation once
// in turn (A B C A B C), so drift of the machine spreads over all of them;
// scenario 1, whose differences are smaller than that drift, alternates op
// by op within each round instead, and scenario 4 (processes on one key)
// runs its cases one after the other, each with every implementation in
// turn. Throughputs are medians over rounds; latencies are percentiles over
// the samples of all rounds. Ratios are to baton in the same run. Scenarios
// 7 (election failover) and 8 (many leases on one connection) measure baton
// alone, once.
//
// This is its own module so that the root module never depends on the peers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"
)

var nan = math.NaN()

const (
	beginMarker = "<!-- peers:begin -->"
	endMarker   = "<!-- peers:end -->"
)

func main() {
	rounds := flag.Int("rounds", 3, "rounds; each runs every implementation once per scenario")
	dur := flag.Duration("dur", time.Second, "length of one throughput window (scenarios 1-4)")
	handoffs := flag.Int("handoffs", 34, "handoff samples per implementation per round (scenario 5)")
	takeovers := flag.Int("takeovers", 2, "takeover samples per implementation per round (scenario 6)")
	resigns := flag.Int("resigns", 30, "resign samples per election timing profile and number of standbys (scenario 7)")
	standbys := flag.Int("standbys", 10, "standbys of the election in the many-standby resign samples, each on a client of its own (scenario 7)")
	crashes := flag.Int("crashes", 6, "crash samples with the fast election profile, about 1.2s each (scenario 7)")
	slowCrash := flag.Bool("slowcrash", false, "also one crash sample with the client-go election profile, about 15s (scenario 7)")
	leases := flag.Int("leases", 10000, "leases held at once (scenario 8)")
	only := flag.String("only", "", "comma-separated scenario numbers to run (default all)")
	write := flag.String("write", "", "rewrite the section between "+beginMarker+" and "+endMarker+" of this markdown file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file; samples of scenarios 2-6 are labelled scenario=<n> and impl=<name> (pprof -tagfocus)")
	flag.Parse()
	if *standbys < 1 {
		fmt.Fprintln(os.Stderr, "bench: -standbys must be at least 1")
		os.Exit(2)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	e := &env{dur: *dur, handoffs: *handoffs, takeovers: *takeovers,
		resigns: *resigns, standbys: *standbys, crashes: *crashes, slowCrash: *slowCrash, leases: *leases}
	if err := run(ctx, e, *rounds, *only, *write); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(ctx context.Context, e *env, rounds int, only, write string) error {
	srv, err := startServer()
	if err != nil {
		return err
	}
	defer srv.stop()
	e.srv = srv

	selected := scenarios
	if only != "" {
		selected = nil
		for _, s := range scenarios {
			if strings.Contains(","+only+",", ","+s.id+",") {
				selected = append(selected, s)
			}
		}
	}

	results := make(map[string]*result, len(peers))
	for _, p := range peers {
		results[p.name] = newResult()
	}
	began := time.Now()
	for _, s := range selected {
		if s.solo {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "%6.1fs  scenario %s: baton\n", time.Since(began).Seconds(), s.id)
			r := results[peers[0].name]
			if err := s.run(ctx, e, peers[0], "s"+s.id, r); err != nil {
				r.soloErrs = append(r.soloErrs, fmt.Sprintf("scenario %s: %v", s.id, err))
				fmt.Fprintf(os.Stderr, "        error: %v\n", err)
			}
			continue
		}
		if s.joint != nil {
			for round := range rounds {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(os.Stderr, "%6.1fs  scenario %s round %d: all, interleaved\n", time.Since(began).Seconds(), s.id, round+1)
				if err := s.joint(ctx, e, fmt.Sprintf("r%d", round), results); err != nil {
					return err
				}
			}
			continue
		}
		for round := range rounds {
			for i, p := range peers {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(os.Stderr, "%6.1fs  scenario %s round %d: %s\n", time.Since(began).Seconds(), s.id, round+1, p.name)
				tag := fmt.Sprintf("p%d:r%d", i, round)
				r := results[p.name]
				var err error
				// Goroutines started inside, valkey-go's and go-redis's
				// included, inherit the labels: -cpuprofile can be read
				// per implementation with pprof -tagfocus impl=baton.
				pprof.Do(ctx, pprof.Labels("scenario", s.id, "impl", p.name), func(ctx context.Context) {
					err = s.run(ctx, e, p, tag, r)
				})
				if err != nil {
					r.errs = append(r.errs, fmt.Sprintf("scenario %s round %d: %v", s.id, round+1, err))
					fmt.Fprintf(os.Stderr, "        error: %v\n", err)
				}
			}
		}
	}

	valkeyVersion, err := srv.info(ctx, "server", "valkey_version")
	if err != nil {
		valkeyVersion = "unknown"
	}
	doc := report(reportInfo{
		date:      began.Format("2006-01-02"),
		cores:     runtime.NumCPU(),
		valkey:    valkeyVersion,
		goVersion: runtime.Version(),
		modules:   moduleVersions(),
		rounds:    rounds,
		dur:       e.dur,
		handoffs:  e.handoffs,
		takeovers: e.takeovers,
		standbys:  e.standbys,
		slowCrash: e.slowCrash,
		elapsed:   time.Since(began),
	}, selected, results)
	fmt.Print(doc)
	if write != "" {
		return rewriteSection(write, doc)
	}
	return nil
}

// moduleVersions lists the versions of the peers' modules this binary was
// built with.
func moduleVersions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	want := []string{
		"github.com/valkey-io/valkey-go",
		"github.com/go-redsync/redsync/v4",
		"github.com/redis/go-redis/v9",
		"github.com/bsm/redislock",
	}
	var parts []string
	for _, path := range want {
		for _, d := range bi.Deps {
			if d.Path == path {
				v := d.Version
				if d.Replace != nil {
					v = d.Replace.Version
				}
				parts = append(parts, strings.TrimPrefix(path, "github.com/")+" "+v)
			}
		}
	}
	return strings.Join(parts, ", ")
}

// rewriteSection replaces what lies between the markers in path with doc.
func rewriteSection(path, doc string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(data)
	i := strings.Index(text, beginMarker)
	j := strings.Index(text, endMarker)
	if i < 0 || j < i {
		return errors.New(path + ": no " + beginMarker + " ... " + endMarker + " section")
	}
	text = text[:i+len(beginMarker)] + "\n" + doc + text[j:]
	return os.WriteFile(path, []byte(text), 0o644)
}
