package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// writeResult prints v as one JSON line and, when out is set, writes it there.
func writeResult(out string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	if out != "" {
		return os.WriteFile(out, append(b, '\n'), 0o644)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func cmdPorts(args []string) error {
	n := 1
	if len(args) > 0 {
		v, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		n = v
	}
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	u := fs.String("url", "", "URL that answers 200 when ready")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	every := fs.Duration("every", 20*time.Millisecond, "poll this often")
	fs.Parse(args)
	_, err := waitReady(context.Background(), *u, *timeout, *every)
	return err
}

// waitReady polls u until it answers 200 and returns how long that took.
func waitReady(ctx context.Context, u string, timeout, every time.Duration) (time.Duration, error) {
	start := time.Now()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		if resp, err := c.Get(u); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%s not ready after %s", u, timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(every):
		}
	}
}

// upstreamCount reads the upstream's /_count answer.
func upstreamCount(u string) (int64, error) {
	if u == "" {
		return -1, nil
	}
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, err
	}
	return v.Count, nil
}

type stampedeResult struct {
	URL              string         `json:"url"`
	Clients          int            `json:"clients"`
	OK               int            `json:"ok"`
	Statuses         map[string]int `json:"statuses"`
	Errors           []string       `json:"errors,omitempty"`
	DistinctBodies   int            `json:"distinct_bodies"`
	BodyBytes        int64          `json:"body_bytes"`
	UpstreamRequests int64          `json:"upstream_requests"`
	LastBodyMs       float64        `json:"last_body_ms"`
	FirstBodyMs      float64        `json:"first_body_ms"`
	MedianBodyMs     float64        `json:"median_body_ms"`
	XCache           map[string]int `json:"x_cache"`
}

func cmdStampede(args []string) error {
	fs := flag.NewFlagSet("stampede", flag.ExitOnError)
	u := fs.String("url", "", "the URL every client asks for")
	n := fs.Int("n", 200, "concurrent clients")
	countURL := fs.String("count-url", "", "upstream /_count?prefix=… URL, read after the clients are done")
	timeout := fs.Duration("timeout", 60*time.Second, "per-request timeout")
	out := fs.String("out", "", "write the result here")
	fs.Parse(args)

	// One connection per client: every request is a first request on a new
	// connection, as 200 CI jobs starting together would make.
	tr := &http.Transport{MaxIdleConnsPerHost: *n, MaxConnsPerHost: *n, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: *timeout}

	type one struct {
		status int
		sum    string
		size   int64
		xc     string
		done   time.Duration
		err    error
	}
	res := make([]one, *n)
	var ready sync.WaitGroup
	var wg sync.WaitGroup
	start := make(chan struct{})
	var t0 time.Time
	for i := range *n {
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, *u, nil)
			ready.Done()
			<-start
			resp, err := client.Do(req)
			if err != nil {
				res[i] = one{err: err, done: time.Since(t0)}
				return
			}
			h := sha256.New()
			size, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			res[i] = one{status: resp.StatusCode, sum: hex.EncodeToString(h.Sum(nil)), size: size,
				xc: resp.Header.Get("X-Cache"), done: time.Since(t0), err: err}
		}()
	}
	ready.Wait()
	t0 = time.Now()
	close(start)
	wg.Wait()

	r := stampedeResult{URL: *u, Clients: *n, Statuses: map[string]int{}, XCache: map[string]int{}}
	sums := map[string]bool{}
	var times []time.Duration
	for _, o := range res {
		if o.err != nil {
			r.Errors = append(r.Errors, o.err.Error())
			r.Statuses["error"]++
			continue
		}
		r.Statuses[strconv.Itoa(o.status)]++
		if o.xc != "" {
			r.XCache[o.xc]++
		}
		if o.status == http.StatusOK {
			r.OK++
			sums[o.sum] = true
			r.BodyBytes = o.size
		}
		times = append(times, o.done)
	}
	if len(r.Errors) > 5 {
		r.Errors = append(r.Errors[:5], fmt.Sprintf("… and %d more", len(r.Errors)-5))
	}
	r.DistinctBodies = len(sums)
	slices.Sort(times)
	if len(times) > 0 {
		r.FirstBodyMs, r.LastBodyMs, r.MedianBodyMs = ms(times[0]), ms(times[len(times)-1]), ms(times[len(times)/2])
	}
	c, err := upstreamCount(*countURL)
	if err != nil {
		return err
	}
	r.UpstreamRequests = c
	return writeResult(*out, r)
}

// readList reads one item a line from a file or an http URL.
func readList(src string) ([]string, error) {
	var rd io.Reader
	if strings.HasPrefix(src, "http://") {
		resp, err := http.Get(src)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", src, resp.Status)
		}
		rd = resp.Body
	} else {
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		rd = f
	}
	var out []string
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

type fetchResult struct {
	Meta     map[string]string `json:"meta,omitempty"`
	Base     string            `json:"base"`
	Paths    int               `json:"paths"`
	Rounds   []map[string]int  `json:"rounds"` // per round: status or X-Cache → count
	Failures []string          `json:"failures,omitempty"`
	Seconds  []float64         `json:"seconds"`
	Bytes    int64             `json:"bytes"`
	Bad      int               `json:"bad"`
	VmHWMKiB int64             `json:"vmhwm_kib,omitempty"`
	VmRSSKiB int64             `json:"vmrss_kib,omitempty"`
}

// kvFlags collects repeated -meta key=value flags.
type kvFlags map[string]string

func (k kvFlags) String() string { return fmt.Sprint(map[string]string(k)) }
func (k kvFlags) Set(v string) error {
	key, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want key=value, got %q", v)
	}
	k[key] = val
	return nil
}

func cmdFetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	base := fs.String("base", "", "base URL of the server")
	list := fs.String("list", "", "file or URL listing one item a line")
	prefix := fs.String("prefix", "", "prepended to each item to make the path")
	conc := fs.Int("c", 16, "concurrent requests")
	rounds := fs.Int("rounds", 2, "times each path is fetched (the first fills a cache)")
	pid := fs.Int("pid", 0, "when set, report this process's VmHWM and VmRSS after the rounds")
	out := fs.String("out", "", "write the result here")
	meta := kvFlags{}
	fs.Var(meta, "meta", "key=value copied into the result (repeatable)")
	fs.Parse(args)
	items, err := readList(*list)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	r := fetchResult{Meta: meta, Base: *base, Paths: len(items)}
	var mu sync.Mutex
	for range *rounds {
		tally := map[string]int{}
		start := time.Now()
		ch := make(chan string)
		var wg sync.WaitGroup
		for range *conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := range ch {
					resp, err := client.Get(*base + *prefix + it)
					mu.Lock()
					if err != nil {
						tally["error"]++
						r.Bad++
						if len(r.Failures) < 5 {
							r.Failures = append(r.Failures, err.Error())
						}
						mu.Unlock()
						continue
					}
					mu.Unlock()
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					tally[strconv.Itoa(resp.StatusCode)+" "+resp.Header.Get("X-Cache")]++
					r.Bytes += n
					if resp.StatusCode != http.StatusOK {
						r.Bad++
						if len(r.Failures) < 5 {
							r.Failures = append(r.Failures, fmt.Sprintf("%s: %d", it, resp.StatusCode))
						}
					}
					mu.Unlock()
				}
			}()
		}
		for _, it := range items {
			ch <- it
		}
		close(ch)
		wg.Wait()
		r.Rounds = append(r.Rounds, tally)
		r.Seconds = append(r.Seconds, time.Since(start).Seconds())
	}
	if *pid > 0 {
		r.VmHWMKiB, r.VmRSSKiB = procStatus(*pid)
	}
	return writeResult(*out, r)
}

// procMem reads the memory lines of /proc/PID/status (KiB): VmHWM, VmRSS and
// its parts RssAnon (the heap), RssFile and RssShmem (mapped files, such as the
// mmapped bbolt index, on disk or on tmpfs).
func procMem(pid int) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:", "VmRSS:", "RssAnon:", "RssFile:", "RssShmem:":
			out[strings.ToLower(strings.TrimSuffix(f[0], ":"))+"_kib"] = v
		}
	}
	return out
}

// procStatus reads VmHWM and VmRSS (KiB) of pid.
func procStatus(pid int) (hwm, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			hwm = v
		case "VmRSS:":
			rss = v
		}
	}
	return hwm, rss
}

type startupResult struct {
	Command  string  `json:"command"`
	ReadyMs  float64 `json:"ready_ms"`
	VmHWMKiB int64   `json:"vmhwm_kib"`
	VmRSSKiB int64   `json:"vmrss_kib"`
	// With -settle: when the process's CPU use settled after ready (its
	// background start-up work done), and its peak RSS then.
	SettledMs     float64          `json:"settled_ms,omitempty"`
	SettledHWMKiB int64            `json:"settled_vmhwm_kib,omitempty"`
	SettledMem    map[string]int64 `json:"settled_mem,omitempty"`
	ExitStatus    string           `json:"exit_status"`
}

func cmdStartup(args []string) error {
	fs := flag.NewFlagSet("startup", flag.ExitOnError)
	ready := fs.String("ready", "", "URL that answers 200 once the server is ready")
	timeout := fs.Duration("timeout", 120*time.Second, "give up after")
	logFile := fs.String("log", "", "append the command's output here")
	settle := fs.Bool("settle", false, "after ready, also wait until the process's CPU use settles")
	out := fs.String("out", "", "write the result here")
	fs.Parse(args)
	argv := fs.Args()
	if len(argv) == 0 {
		return errors.New("no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	// Stop the child whatever happens to us.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cmd.Process.Signal(syscall.SIGTERM)
		time.Sleep(2 * time.Second)
		cmd.Process.Kill()
		os.Exit(1)
	}()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, err := waitReady(ctx, *ready, *timeout, 2*time.Millisecond)
	d := time.Since(start)
	r := startupResult{Command: strings.Join(argv, " ")}
	if err == nil {
		r.ReadyMs = ms(d)
		r.VmHWMKiB, r.VmRSSKiB = procStatus(cmd.Process.Pid)
		if *settle {
			if serr := cmdIdle([]string{"-pid", strconv.Itoa(cmd.Process.Pid), "-out", os.DevNull}); serr == nil {
				r.SettledMs = ms(time.Since(start))
				r.SettledHWMKiB, _ = procStatus(cmd.Process.Pid)
				r.SettledMem = procMem(cmd.Process.Pid)
			}
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		r.ExitStatus = fmt.Sprint(waitErr)
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		r.ExitStatus = "killed after 15 s"
	}
	cancel()
	if err != nil {
		return fmt.Errorf("%v (exit: %s)", err, r.ExitStatus)
	}
	return writeResult(*out, r)
}

type runResult struct {
	Name      string  `json:"name,omitempty"`
	Command   string  `json:"command"`
	Seconds   float64 `json:"seconds"`
	MaxRSSKiB int64   `json:"maxrss_kib"`
	ExitCode  int     `json:"exit_code"`
	UserSec   float64 `json:"user_s"`
	SysSec    float64 `json:"sys_s"`
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	name := fs.String("name", "", "what the command is, for the report")
	out := fs.String("out", "", "write the result here")
	fs.Parse(args)
	argv := fs.Args()
	if len(argv) == 0 {
		return errors.New("no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stderr, os.Stderr
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		s := <-sigs
		cmd.Process.Signal(s)
	}()
	err := cmd.Wait()
	r := runResult{Name: *name, Command: strings.Join(argv, " "), Seconds: time.Since(start).Seconds(), ExitCode: cmd.ProcessState.ExitCode()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSSKiB = ru.Maxrss
		r.UserSec = time.Duration(ru.Utime.Nano()).Seconds()
		r.SysSec = time.Duration(ru.Stime.Nano()).Seconds()
	}
	if werr := writeResult(*out, r); werr != nil {
		return werr
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return err
	}
	if r.ExitCode != 0 {
		os.Exit(r.ExitCode)
	}
	return nil
}

// cpuTicks is the user+system CPU time of pid in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

// cmdIdle waits until a process has used less than -below of a core for two
// consecutive half-second samples: a server's background start-up work
// (index loading, size accounting) is done before it is measured.
func cmdIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	pid := fs.Int("pid", 0, "process to watch")
	below := fs.Float64("below", 0.05, "fraction of one core under which the process counts as idle")
	timeout := fs.Duration("timeout", 120*time.Second, "give up (without failing) after")
	out := fs.String("out", "", "write the result here")
	fs.Parse(args)
	const every = 500 * time.Millisecond
	const hz = 100 // USER_HZ
	start := time.Now()
	prev, err := cpuTicks(*pid)
	if err != nil {
		return err
	}
	quiet := 0
	for quiet < 2 && time.Since(start) < *timeout {
		time.Sleep(every)
		cur, err := cpuTicks(*pid)
		if err != nil {
			return err
		}
		if float64(cur-prev)/hz/every.Seconds() < *below {
			quiet++
		} else {
			quiet = 0
		}
		prev = cur
	}
	return writeResult(*out, map[string]any{"settled_s": time.Since(start).Seconds(), "idle": quiet >= 2})
}
