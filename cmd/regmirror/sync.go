package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/proxy"
)

// syncMemoryLimit is the memory the Go runtime of a sync collects to stay
// within (a soft limit: runtime/debug.SetMemoryLimit). It leaves room under
// issue 17's 512 MiB for what the runtime does not count: the index's mapped
// pages between their drops, and the binary.
const syncMemoryLimit = 360 << 20

// maxSyncJobs is the most --jobs a sync takes. A sync works on 2 objects per
// download, each with its goroutine, fill and staged file: at --jobs 100000 a
// 5,000-mapping sync peaked at 448 MiB RSS (75 MiB at --jobs 4), and a larger
// one would run out of memory or file descriptors. No upstream wants more
// downloads at once from one client than this.
const maxSyncJobs = 256

func syncFlags() []cli.Flag {
	return append(config.FlagsFor(config.Sync),
		&cli.BoolFlag{Name: "all-versions", Usage: "RefPack: fetch every version, archived ones included (default: the latest)"},
		&cli.StringSliceFlag{Name: "package", Usage: "RefPack: only this package id (repeatable)"},
		&cli.StringSliceFlag{Name: "owner", Usage: "RefPack: only packages of this owner (repeatable)"},
		&cli.IntFlag{Name: "jobs", Value: 4, Usage: fmt.Sprintf("objects downloaded at once (1 to %d)", maxSyncJobs)},
	)
}

// syncCmd mirrors the upstreams it is given ahead of time. Given upstreams of
// one API only, the other API is not contacted.
func syncCmd(c *cli.Context) error {
	cfg, _, err := config.FromContext(c)
	if err != nil {
		return err
	}
	jobs := c.Int("jobs")
	if jobs < 1 || jobs > maxSyncJobs {
		return cli.Exit(fmt.Sprintf("sync: --jobs: %d is not between 1 and %d", jobs, maxSyncJobs), 1)
	}
	// --jobs is the number of downloads in flight at the upstream, so the
	// upstream's cap (serve's --upstream-max-conns, which sync does not take)
	// must not hold it lower, queueing the rest until they fail busy.
	cfg.UpstreamMaxConns = max(cfg.UpstreamMaxConns, jobs)
	doRefPack, doHydrilla := c.IsSet("refpack-upstream"), c.IsSet("hydrilla-upstream")
	if !doRefPack && !doHydrilla {
		doRefPack, doHydrilla = true, true
	}
	// A sync reads nothing twice: a memory tier would only cost it (every
	// write drops its key from the tier, and the tier's counters take memory).
	cfg.MemoryCacheSize = 0
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := openMirror(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Server.LoadForSync(ctx); err != nil {
		return err
	}
	// A sync allocates about 16 KB per object and keeps little for long (the
	// size accounting, the files it takes, the list it walks: nearly all
	// without pointers). Collections are what cost, so they are made rare,
	// and the memory limit, not the live heap's growth, bounds the peak:
	// issue 17 asks a sync of 100,000 mappings within 512 MiB, whose live
	// heap is about 190 MiB. At 10,000 mappings this saves 1.5–2 of the 16
	// CPU seconds the collections took at GOGC 50, for about 40 MiB more at
	// the peak (100 MiB).
	// GOGC and GOMEMLIMIT, when set, are the operator's to keep.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(syncMemoryLimit)
	}
	// The start-up accounting ends with the sweep of blobs no entry names (what
	// a killed sync left between a blob's rename and its group's commit). A
	// sync with little to do would otherwise exit before it ran, leaving them.
	m.Cache.WaitLoaded()
	opts := mirrorsync.Options{
		Jobs: jobs, AllVersions: c.Bool("all-versions"),
		Packages: c.StringSlice("package"), Owners: c.StringSlice("owner"),
	}
	rep := newReporter(os.Stderr, log)
	opts.Progress = rep.progress
	var results []*mirrorsync.Result
	if doHydrilla {
		results = append(results, m.Sync.Hydrilla(ctx, opts)...)
	}
	if doRefPack {
		results = append(results, m.Sync.RefPack(ctx, opts)...)
	}
	rep.finish()
	return summarize(os.Stdout, results)
}

func summarize(w io.Writer, results []*mirrorsync.Result) error {
	var failed []string
	for _, r := range results {
		fmt.Fprintf(w, "%s %s: ", r.API, r.Upstream)
		if r.API == "refpack" {
			fmt.Fprintf(w, "%d packages, %d versions and %d documents fetched", r.Packages, r.Items, r.Files)
		} else {
			fmt.Fprintf(w, "%d items and %d files fetched", r.Items, r.Files)
		}
		fmt.Fprintf(w, ", %s, %d already held, %d failed, in %s\n",
			humanize.IBytes(uint64(r.Bytes)), r.Held, len(r.Failed), r.Ended.Sub(r.Started).Round(time.Millisecond))
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("%s %s: %v", r.API, r.Upstream, r.Err))
		}
		for _, f := range r.Failed {
			failed = append(failed, fmt.Sprintf("%s %s: %s", r.API, r.Upstream, f))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "failed:\n  %s\n", strings.Join(failed, "\n  "))
		if len(failed) == 1 {
			return cli.Exit("sync: 1 failure", 1)
		}
		return cli.Exit(fmt.Sprintf("sync: %d failures", len(failed)), 1)
	}
	return nil
}

// reporter shows sync progress: a progress bar on a terminal, plain lines
// (at most one every two seconds) otherwise.
type reporter struct {
	tty      bool
	out      *os.File
	log      *slog.Logger
	bar      *progressbar.ProgressBar
	key      string
	lastLine time.Time
}

func newReporter(out *os.File, log *slog.Logger) *reporter {
	return &reporter{tty: term.IsTerminal(int(out.Fd())), out: out, log: log}
}

func (r *reporter) progress(p mirrorsync.Progress) {
	if r.tty {
		key := p.API + " " + p.Upstream
		if r.bar == nil || r.key != key {
			if r.bar != nil {
				r.bar.Finish()
			}
			r.key = key
			r.bar = progressbar.NewOptions(p.Total, progressbar.OptionSetWriter(r.out),
				progressbar.OptionSetDescription(key), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
				progressbar.OptionClearOnFinish())
		}
		r.bar.ChangeMax(p.Total)
		r.bar.Set(p.Done)
		return
	}
	if time.Since(r.lastLine) >= 2*time.Second || p.Done == p.Total {
		r.lastLine = time.Now()
		r.log.Info("sync progress", "api", p.API, "upstream", p.Upstream, "done", p.Done, "total", p.Total, "last", p.What)
	}
}

func (r *reporter) finish() {
	if r.bar != nil {
		r.bar.Finish()
	}
}

// verifyCmd checks every blob against its digest and the index against the blobs.
func verifyCmd(c *cli.Context) error {
	cfg, _, err := config.FromContext(c)
	if err != nil {
		return err
	}
	// Verifying a folder that holds no store would create an empty one and
	// report it clean: a mistyped --data in a timer would hide every problem.
	// With --blob-store the bucket is what is verified, from any folder.
	if _, err := os.Stat(filepath.Join(cfg.Data, "index.db")); err != nil && cfg.BlobStore == "" {
		return cli.Exit(fmt.Sprintf("verify: no store in %s (no index.db): is --data right?", cfg.Data), 1)
	}
	log := newLogger(cfg)
	// verify reports; only --repair changes the store (it drops what it reports).
	opts := mirrorOptions(cfg, log)
	opts.KeepUnnamedBlobs = true
	m, err := proxy.Open(context.Background(), cfg, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	problems, err := verifyStore(c.Context, m, c.Bool("repair"))
	if err != nil {
		return err
	}
	unrecoverable, leftovers := 0, 0
	for _, p := range problems {
		fmt.Println(p.String())
		if p.Unrecoverable {
			unrecoverable++
		}
		if p.Leftover {
			leftovers++
		}
	}
	if unrecoverable > 0 && c.Bool("repair") {
		// Hosted entries have no upstream to refetch them from: kept, and the
		// operator must restore their blobs.
		return cli.Exit(fmt.Sprintf("verify: %s found, %d repaired, %d unrecoverable (hosted packages: restore their blobs from a backup)",
			problemCount(len(problems)), len(problems)-unrecoverable, unrecoverable), 1)
	}
	if len(problems) > 0 && c.Bool("repair") {
		// Repaired: the store is consistent again (what was dropped is refetched on demand).
		fmt.Printf("verify: %s found and repaired\n", problemCount(len(problems)))
		return nil
	}
	if len(problems) > leftovers {
		return cli.Exit(fmt.Sprintf("verify: %s found (run with --repair to drop them)", problemCount(len(problems))), 1)
	}
	fmt.Println("verify: every blob matches its digest and every entry its blob")
	if leftovers > 0 {
		// Not damage: what a killed sync or serve leaves between placing a
		// blob and recording its entry. Exit 0, so a unit that runs verify
		// before serve still restarts serve after a crash.
		fmt.Printf("verify: %s no entry names (left by an interrupted write; harmless: the next serve, sync or verify --repair removes such blobs)\n",
			blobCount(leftovers))
	}
	return nil
}

// blobCount says "1 blob" or "N blobs".
func blobCount(n int) string {
	if n == 1 {
		return "1 blob"
	}
	return fmt.Sprintf("%d blobs", n)
}

// problemCount says "1 problem" or "N problems".
func problemCount(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}
