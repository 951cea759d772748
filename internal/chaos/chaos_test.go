package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	flagSeed       = flag.Int64("chaos.seed", 0, "seed of the first run; run i uses seed+i (0: the short campaign's seeds, or the clock when -chaos.runs is set)")
	flagRuns       = flag.Int("chaos.runs", 0, "number of runs (0: the short campaign of make test)")
	flagDuration   = flag.Duration("chaos.duration", 0, "planned length of each run's fault phase (default 15s; 10s in the short campaign)")
	flagCandidates = flag.Int("chaos.candidates", 0, "candidates per run (default 4)")
	flagFaults     = flag.String("chaos.faults", "", `fault kinds, comma-separated: "all", kinds, or "-kind" to leave one out (default: all; the short campaign leaves out the kinds of known library bugs)`)
	flagMode       = flag.String("chaos.mode", "", "library, cli, or both (alternating by run; default both)")
	flagLogs       = flag.String("chaos.logs", "", "keep every run's process logs under this directory (failed runs' logs are kept anyway)")
	flagReport     = flag.String("chaos.report", "", "write the campaign's table and verdict to this file")
)

// shortCampaign is what make test runs: seeds whose schedules, drawn from
// every kind with shortDuration, inject each kind at least once and cut the
// leader off for longer than the TTL (2: kill-candidate of the leader,
// blackhole-proxy of the leader, del-key; 3: pause-candidate,
// restart-server; 185: cut-proxy of the leader for 3.5s, client-kill,
// delay-proxy of the leader; 235: pause-server for 3.5s, script-flush,
// client-pause-write), in both modes. Adding a kind changes the schedules:
// pick the seeds again then (Plan draws them without running anything).
var shortCampaign = []struct {
	seed int64
	mode Mode
}{{2, ModeCLI}, {3, ModeLibrary}, {185, ModeCLI}, {235, ModeLibrary}}

const shortDuration = 10 * time.Second

// knownBugs are the fault kinds the short campaign leaves out while a
// library bug they expose is open; -chaos.faults=all runs them. Each entry
// says which verdict fails and why. None is open.
var knownBugs = map[string]string{}

var (
	binDir    string // made by TestMain, removed when the tests end
	buildOnce sync.Once
	bins      Binaries
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "baton-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// binaries builds the programs once per test binary run.
func binaries(t *testing.T) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bins, buildErr = Build(ctx, binDir)
		t.Logf("built candidate, worker and baton with -race in %v", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins
}

// TestChaos runs a campaign: by default the short one of make test; with
// -chaos.runs, the one the flags describe (make chaos).
func TestChaos(t *testing.T) {
	b := binaries(t)
	type planned struct {
		seed int64
		mode Mode
	}
	var runs []planned
	duration := shortDuration
	faultList := "all"
	for kind := range knownBugs {
		faultList += ",-" + kind
	}
	if *flagRuns > 0 {
		duration = DefaultDuration
		faultList = "all"
		seed := *flagSeed
		if seed == 0 {
			seed = time.Now().Unix()
		}
		modes := []Mode{ModeLibrary, ModeCLI}
		switch *flagMode {
		case "", "both":
		case string(ModeLibrary), string(ModeCLI):
			modes = []Mode{Mode(*flagMode)}
		default:
			t.Fatalf("-chaos.mode=%q; want library, cli or both", *flagMode)
		}
		for i := range *flagRuns {
			runs = append(runs, planned{seed + int64(i), modes[i%len(modes)]})
		}
		t.Logf("campaign: %d runs from seed %d", len(runs), seed)
	} else {
		for _, r := range shortCampaign {
			runs = append(runs, planned{r.seed, r.mode})
		}
	}
	if *flagDuration > 0 {
		duration = *flagDuration
	}
	if *flagFaults != "" {
		faultList = *flagFaults
	}
	faults, err := SelectFaults(StandardFaults(), faultList)
	if err != nil {
		t.Fatal(err)
	}
	if *flagRuns == 0 && len(knownBugs) > 0 && *flagFaults == "" {
		for kind, why := range knownBugs {
			t.Logf("left out of the short campaign: %s: %s", kind, why)
		}
	}

	rep := NewReport(Kinds(faults))
	for _, p := range runs {
		cfg := Config{
			Seed:       p.seed,
			Mode:       p.mode,
			Candidates: *flagCandidates,
			Duration:   duration,
			Faults:     faults,
			Binaries:   b,
		}
		t.Run(fmt.Sprintf("seed=%d/%s", p.seed, p.mode), func(t *testing.T) {
			if *flagLogs != "" {
				cfg.LogDir = filepath.Join(*flagLogs, fmt.Sprintf("seed-%d-%s", p.seed, p.mode))
				if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			res := Run(t, cfg)
			rep.Add(res)
			t.Log(res.Summary())
			if !res.OK() {
				kept := keepLogs(t, res)
				t.Errorf("run failed: %s\nreplay: go test -race ./internal/chaos -run '^TestChaos$' -count=1 -v -args %s\n%s  logs kept in %s",
					strings.Join(res.Failed(), ", "), res.Config.Replay(), res.Details(), kept)
			}
		})
	}
	table := rep.Table()
	t.Logf("\n%s\n%s", table, rep.Verdict())
	for _, f := range rep.Failed() {
		t.Logf("failed: %s", f)
	}
	if *flagReport != "" {
		out := table + "\n" + rep.Verdict() + "\n"
		for _, f := range rep.Failed() {
			out += "failed: " + f + "\n"
		}
		if err := os.WriteFile(*flagReport, []byte(out), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// keepLogs copies a failed run's logs out of its temporary directory, unless
// they are in -chaos.logs already, and returns where they are.
func keepLogs(t *testing.T, res *Result) string {
	if *flagLogs != "" {
		return res.LogDir
	}
	dst, err := os.MkdirTemp("", fmt.Sprintf("baton-chaos-seed-%d-%s-", res.Config.Seed, res.Config.Mode))
	if err != nil {
		t.Logf("cannot keep the logs: %v", err)
		return res.LogDir
	}
	if out, err := exec.Command("cp", "-r", res.LogDir+"/.", dst).CombinedOutput(); err != nil {
		t.Logf("cannot keep the logs: %v: %s", err, out)
	}
	return dst
}
