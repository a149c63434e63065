package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func cmdMem(args []string) error {
	fs := flag.NewFlagSet("mem", flag.ExitOnError)
	pid := fs.Int("pid", 0, "process to read")
	out := fs.String("out", "", "write the result here")
	fs.Parse(args)
	m := procMem(*pid)
	if m == nil {
		return fmt.Errorf("no process %d", *pid)
	}
	return writeResult(*out, m)
}

// wrkRun is what one wrk --latency output says.
type wrkRun struct {
	ReqPerSec float64
	P50, P99  float64 // milliseconds
	Requests  int64
	Non2xx    int64
	SockErrs  string
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reLat     = regexp.MustCompile(`(?m)^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	reReqs    = regexp.MustCompile(`(\d+) requests in`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: (.*)`)
)

func parseWrk(path string) (*wrkRun, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := string(b)
	m := reRPS.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("%s: no Requests/sec line", path)
	}
	r := &wrkRun{}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	for _, lm := range reLat.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(lm[2], 64)
		switch lm[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		case "m":
			v *= 60000
		}
		switch lm[1] {
		case "50":
			r.P50 = v
		case "99":
			r.P99 = v
		}
	}
	if m := reReqs.FindStringSubmatch(s); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(s); m != nil {
		r.SockErrs = m[1]
	}
	return r, nil
}

// stat is the median and range of one measure over rounds.
type stat struct{ med, lo, hi float64 }

func statOf(xs []float64) stat {
	if len(xs) == 0 {
		return stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{med, s[0], s[len(s)-1]}
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func (s stat) String() string {
	if s.lo == s.hi {
		return fmtNum(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(s.med), fmtNum(s.lo), fmtNum(s.hi))
}

// wrkSet is the rounds of one benchmark against one server.
type wrkSet struct {
	runs          []*wrkRun
	byRound       map[string]*wrkRun // "r1" → run
	rps, p50, p99 stat
	non2xx        int64
	sockErrs      []string
	files         []string
	anyMissing    bool
}

func loadWrk(dir, bench, server string) *wrkSet {
	files, _ := filepath.Glob(filepath.Join(dir, "wrk", bench+"."+server+".r*.txt"))
	if len(files) == 0 {
		return nil
	}
	slices.Sort(files)
	ws := &wrkSet{files: files, byRound: map[string]*wrkRun{}}
	var rps, p50, p99 []float64
	for _, f := range files {
		r, err := parseWrk(f)
		if err != nil {
			ws.anyMissing = true
			continue
		}
		ws.runs = append(ws.runs, r)
		parts := strings.Split(filepath.Base(f), ".")
		ws.byRound[parts[len(parts)-2]] = r
		rps, p50, p99 = append(rps, r.ReqPerSec), append(p50, r.P50), append(p99, r.P99)
		ws.non2xx += r.Non2xx
		if r.SockErrs != "" {
			ws.sockErrs = append(ws.sockErrs, r.SockErrs)
		}
	}
	if len(ws.runs) == 0 {
		return nil
	}
	ws.rps, ws.p50, ws.p99 = statOf(rps), statOf(p50), statOf(p99)
	return ws
}

// roundRatios divides ws by ref round by round: req/s and p99.
func roundRatios(ws, ref *wrkSet) (rps, p99 stat) {
	var a, b []float64
	for k, r := range ws.byRound {
		if o, ok := ref.byRound[k]; ok && o.ReqPerSec > 0 && o.P99 > 0 {
			a = append(a, r.ReqPerSec/o.ReqPerSec)
			b = append(b, r.P99/o.P99)
		}
	}
	return statOf(a), statOf(b)
}

func (s stat) ratio() string {
	if s.lo == s.hi {
		return fmt.Sprintf("%.2f×", s.med)
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", s.med, s.lo, s.hi)
}

func readJSON(path string, v any) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

func passFail(ok bool) string {
	if ok {
		return "**pass**"
	}
	return "**FAIL**"
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	dir := fs.String("dir", "bench/out", "the run's output folder")
	out := fs.String("out", "", "also write the table here")
	fs.Parse(args)
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	if env, err := os.ReadFile(filepath.Join(*dir, "env.txt")); err == nil {
		p("```\n%s```\n\n", env)
	}

	// 1. Cached hits.
	servers := []struct{ id, name string }{
		{"regmirror", "regmirror (warm)"},
		{"regmirror-mem", "regmirror --memory-max-item 2MiB (zip held in memory)"},
		{"regmirror-nolane", "regmirror --fast-lane=false (every request through net/http)"},
		{"nginx-cache", "nginx proxy_cache (warm)"},
		{"nginx-static", "nginx static files (upper bound)"},
		{"go-servecontent", "net/http alone: http.ServeContent from memory"},
		{"go-write", "net/http alone: headers + one Write"},
	}
	benches := []struct{ id, name string }{{"meta1k", "1 KiB JSON /meta"}, {"zip1m", "1 MiB zip"}}
	p("### Cached hits (wrk -t2 -c64 --latency; median (range) of the rounds)\n\n")
	p("Ratios are taken round by round (the servers of one round run back to back) and their median (range) is shown.\n\n")
	p("| body | server | req/s | p50 ms | p99 ms | req/s ÷ nginx proxy_cache | p99 ÷ nginx proxy_cache |\n")
	p("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
	var notes []string
	targets := map[string]string{}
	for _, bn := range benches {
		ref := loadWrk(*dir, bn.id, "nginx-cache")
		for _, sv := range servers {
			ws := loadWrk(*dir, bn.id, sv.id)
			if ws == nil {
				continue
			}
			ratio, p99r := "", ""
			var rr, pr stat
			if ref != nil && ref.rps.med > 0 {
				rr, pr = roundRatios(ws, ref)
				ratio, p99r = rr.ratio(), pr.ratio()
			}
			p("| %s | %s | %s | %s | %s | %s | %s |\n", bn.name, sv.name, ws.rps, ws.p50, ws.p99, ratio, p99r)
			if ws.non2xx > 0 || len(ws.sockErrs) > 0 {
				notes = append(notes, fmt.Sprintf("%s / %s: %d non-2xx answers; socket errors: %s", bn.name, sv.name, ws.non2xx, strings.Join(ws.sockErrs, "; ")))
			}
			if sv.id == "regmirror" && ref != nil {
				r, pr := rr.med, pr.med
				switch bn.id {
				case "meta1k":
					targets["cached 1 KiB ≥ 0.8× nginx proxy_cache req/s"] = fmt.Sprintf("%.2f× %s", r, passFail(r >= 0.8))
					targets["cached 1 KiB p99 ≤ 2× nginx proxy_cache"] = fmt.Sprintf("%.2f× %s", pr, passFail(pr <= 2))
				case "zip1m":
					targets["cached 1 MiB ≥ 1.0× nginx proxy_cache req/s"] = fmt.Sprintf("%.2f× %s", r, passFail(r >= 1.0))
				}
			}
		}
	}
	p("\n")

	// 2. Stampede.
	p("### Stampede (200 concurrent first requests, one uncached 1 MiB zip, upstream +300 ms)\n\n")
	p("| server | upstream requests per round | last body ms | median body ms | 200 answers | distinct bodies |\n")
	p("| --- | --- | ---: | ---: | --- | --- |\n")
	for _, sv := range []struct{ id, name string }{{"regmirror", "regmirror"}, {"nginx-cache", "nginx proxy_cache + proxy_cache_lock"}} {
		files, _ := filepath.Glob(filepath.Join(*dir, "stampede", sv.id+".r*.json"))
		slices.Sort(files)
		if len(files) == 0 {
			continue
		}
		var ups, oks, dist []string
		var last, med []float64
		allOne := true
		for _, f := range files {
			var r stampedeResult
			if !readJSON(f, &r) {
				continue
			}
			ups = append(ups, strconv.FormatInt(r.UpstreamRequests, 10))
			oks = append(oks, fmt.Sprintf("%d/%d", r.OK, r.Clients))
			dist = append(dist, strconv.Itoa(r.DistinctBodies))
			last, med = append(last, r.LastBodyMs), append(med, r.MedianBodyMs)
			if r.UpstreamRequests != 1 || r.OK != r.Clients {
				allOne = false
			}
		}
		p("| %s | %s | %s | %s | %s | %s |\n", sv.name, strings.Join(ups, ", "), statOf(last), statOf(med), strings.Join(oks, ", "), strings.Join(dist, ", "))
		if sv.id == "regmirror" {
			targets["one upstream request per stampede"] = strings.Join(ups, ", ") + " " + passFail(allOne)
		}
	}
	p("\n")

	// 3. /query and start-up.
	qfiles, _ := filepath.Glob(filepath.Join(*dir, "wrk", "query-*.regmirror.r*.txt"))
	var sizes []int
	for _, f := range qfiles {
		n, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(filepath.Base(f), ".", 2)[0], "query-"))
		if err == nil && !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	if len(sizes) > 0 {
		p("### Hydrilla /query from the pattern index (after `regmirror sync`; wrk -t2 -c64 -s bench/query.lua)\n\n")
		p("| mappings | distinct query URLs | req/s | p50 ms | p99 ms | upstream /query requests during the runs |\n")
		p("| ---: | ---: | ---: | ---: | ---: | ---: |\n")
	}
	for _, n := range sizes {
		ws := loadWrk(*dir, fmt.Sprintf("query-%d", n), "regmirror")
		if ws == nil {
			continue
		}
		var info struct {
			Upstream int64 `json:"upstream_queries"`
			URLs     int   `json:"query_urls"`
		}
		up, urls := "?", "?"
		if readJSON(filepath.Join(*dir, "values", fmt.Sprintf("query-%d.json", n)), &info) {
			urls = strconv.Itoa(info.URLs)
			if info.Upstream >= 0 {
				up = strconv.FormatInt(info.Upstream, 10)
			} else {
				up = "n/a (upstream not running: data directory reused)"
			}
		}
		p("| %d | %s | %s | %s | %s | %s |\n", n, urls, ws.rps, ws.p50, ws.p99, up)
		if ws.non2xx > 0 || len(ws.sockErrs) > 0 {
			notes = append(notes, fmt.Sprintf("/query at %d mappings: %d non-2xx; socket errors: %s", n, ws.non2xx, strings.Join(ws.sockErrs, "; ")))
		}
		if n == 100000 {
			targets["/query at 100k mappings ≥ 30,000 req/s"] = fmt.Sprintf("%s %s", fmtNum(ws.rps.med), passFail(ws.rps.med >= 30000))
		}
	}
	p("\n")

	p("### Start-up, memory and sync\n\n")
	p("| measure | value |\n| --- | ---: |\n")
	sfiles, _ := filepath.Glob(filepath.Join(*dir, "values", "startup-*.r*.json"))
	byN := map[int][]startupResult{}
	var startN []int
	for _, f := range sfiles {
		n, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(filepath.Base(f), ".", 2)[0], "startup-"))
		var r startupResult
		if err != nil || !readJSON(f, &r) || r.ReadyMs <= 0 {
			continue
		}
		if _, ok := byN[n]; !ok {
			startN = append(startN, n)
		}
		byN[n] = append(byN[n], r)
	}
	slices.Sort(startN)
	for _, n := range startN {
		var ready, hwm, settled, shwm []float64
		for _, r := range byN[n] {
			ready = append(ready, r.ReadyMs)
			hwm = append(hwm, float64(r.VmHWMKiB)/1024)
			if r.SettledMs > 0 {
				settled = append(settled, r.SettledMs)
				shwm = append(shwm, float64(r.SettledHWMKiB)/1024)
			}
		}
		st := statOf(ready)
		p("| start-up to /readyz 200 with %d mappings stored (ms, %d runs) | %s |\n", n, len(ready), st)
		p("| peak RSS at ready, %d mappings (MiB) | %s |\n", n, statOf(hwm))
		if len(settled) > 0 {
			p("| start-up until the background start-up work is done (CPU idle), %d mappings (ms) | %s |\n", n, statOf(settled))
			p("| peak RSS then, %d mappings (MiB) | %s |\n", n, statOf(shwm))
		}
		if n == 100000 {
			targets["ready < 2 s with 100k mappings"] = fmt.Sprintf("%s ms %s", fmtNum(st.med), passFail(st.med < 2000))
		}
	}
	for _, n := range sizes {
		var r map[string]int64
		if readJSON(filepath.Join(*dir, "values", fmt.Sprintf("serve-%d.json", n)), &r) {
			if _, ok := r["rssanon_kib"]; ok {
				p("| peak RSS of serve after the /query runs, %d mappings (MiB) | %.0f (now: heap %.0f, mapped files %.0f) |\n", n,
					float64(r["vmhwm_kib"])/1024, float64(r["rssanon_kib"])/1024, float64(r["rssfile_kib"]+r["rssshmem_kib"])/1024)
			} else {
				p("| peak RSS of serve after the /query runs, %d mappings (MiB) | %.0f |\n", n, float64(r["vmhwm_kib"])/1024)
			}
		}
	}
	var mo fetchResult
	var base map[string]int64
	if readJSON(filepath.Join(*dir, "values", "mem-objects.json"), &mo) && len(mo.Seconds) >= 2 {
		readJSON(filepath.Join(*dir, "values", "mem-objects.base.json"), &base)
		p("| peak RSS after serving %d distinct cached objects of %s bytes, memory tier bounded to %s (MiB) | %.0f (at ready: %.0f; at the end: %.0f) |\n",
			mo.Paths, mo.Meta["object_bytes"], mo.Meta["memory_cache_size"], float64(mo.VmHWMKiB)/1024, float64(base["vmhwm_kib"])/1024, float64(mo.VmRSSKiB)/1024)
		p("| … fetching them through the mirror, 16 clients: misses / hits (s) | %.2f / %.2f |\n", mo.Seconds[0], mo.Seconds[1])
		if mo.Bad > 0 {
			notes = append(notes, fmt.Sprintf("memory run: %d answers were not 200: %s", mo.Bad, strings.Join(mo.Failures, "; ")))
		}
	}
	sy, _ := filepath.Glob(filepath.Join(*dir, "values", "sync-*.json"))
	slices.Sort(sy)
	for _, f := range sy {
		var r struct {
			runResult
			Skipped string `json:"skipped"`
			Reused  string `json:"reused"`
		}
		if !readJSON(f, &r) {
			continue
		}
		switch {
		case r.Skipped != "":
			p("| %s | %s |\n", r.Name, r.Skipped)
		case r.Reused != "":
			p("| %s | not run: data directory reused (%s) |\n", r.Name, r.Reused)
		default:
			p("| %s: time / peak RSS | %.1f s / %.0f MiB |\n", r.Name, r.Seconds, float64(r.MaxRSSKiB)/1024)
		}
	}
	var fsy struct {
		Mappings     int     `json:"mappings"`
		Jobs         int     `json:"jobs"`
		FloorSeconds float64 `json:"floor_seconds"`
		Runs         []struct {
			Binary     string  `json:"binary"`
			Data       string  `json:"data"`
			Seconds    float64 `json:"seconds"`
			Ratio      float64 `json:"ratio"`
			PeakRSSKiB int64   `json:"peak_rss_kib"`
		} `json:"runs"`
	}
	if readJSON(filepath.Join(*dir, "values", "floor-sync.json"), &fsy) {
		p("| Hydrilla sync of %d mappings, --jobs %d: the floor (fetch + sha256, nothing stored) | %.2f s |\n", fsy.Mappings, fsy.Jobs, fsy.FloorSeconds)
		for _, r := range fsy.Runs {
			p("| … sync (%s), data directory on %s: time / × floor / peak RSS | %.2f s / %.1f× / %.0f MiB |\n",
				r.Binary, r.Data, r.Seconds, r.Ratio, float64(r.PeakRSSKiB)/1024)
		}
	}
	p("\n")

	// Targets.
	p("### Targets (issue 6)\n\n| target | this run |\n| --- | --- |\n")
	order := []string{
		"cached 1 KiB ≥ 0.8× nginx proxy_cache req/s", "cached 1 KiB p99 ≤ 2× nginx proxy_cache",
		"cached 1 MiB ≥ 1.0× nginx proxy_cache req/s", "one upstream request per stampede",
		"/query at 100k mappings ≥ 30,000 req/s", "ready < 2 s with 100k mappings",
	}
	for _, k := range order {
		v, ok := targets[k]
		if !ok {
			v = "not measured in this run"
		}
		p("| %s | %s |\n", k, v)
	}
	if len(notes) > 0 {
		p("\n")
		for _, n := range notes {
			p("- note: %s\n", n)
		}
	}
	s := b.String()
	fmt.Print(s)
	if *out != "" {
		return os.WriteFile(*out, []byte(s), 0o644)
	}
	return nil
}
