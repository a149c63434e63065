//go:build benchharness

// Command profile runs regmirror's proxy in-process, wired like `regmirror
// serve` (cmd/regmirror/serve.go), with net/http/pprof on a second listener,
// so the hot path can be profiled under wrk:
//
//	go run -tags benchharness ./bench/profile -listen 127.0.0.1:9000 -pprof 127.0.0.1:9001 \
//	    -data /tmp/prof -refpack-upstream http://127.0.0.1:UPSTREAM
//	wrk -t2 -c64 -d10s 'http://127.0.0.1:9000/packages/bench/doc/meta?version=1.0.0' &
//	go tool pprof -top 'http://127.0.0.1:9001/debug/pprof/profile?seconds=8'
//	go tool pprof -sample_index=alloc_space -top http://127.0.0.1:9001/debug/pprof/allocs
//
// -bare servecontent|write|raw answers every request with one body held in memory
// and nothing of the mirror: the ceiling of net/http on this machine.
//
// -single-write hides io.ReaderFrom from the proxy's ResponseWriter: an
// experiment showing what answering an in-memory body with one Write (headers
// and body leave in one write syscall) gains over http.ServeContent's
// ReadFrom path (headers flushed, then the body copied: two syscalls). It
// also disables sendfile, so use it for bodies held in memory only.
//
// It is built only with -tags benchharness so that the module's build and CI
// do not depend on the wiring it copies.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "mirror address")
	pprofAddr := flag.String("pprof", "127.0.0.1:9001", "pprof address")
	data := flag.String("data", "", "data directory")
	rp := flag.String("refpack-upstream", "", "RefPack upstream base URL")
	hy := flag.String("hydrilla-upstream", "", "Hydrilla upstream base URL")
	memMax := flag.Int64("memory-max-item", 1<<20, "largest body held in memory")
	singleWrite := flag.Bool("single-write", false, "hide io.ReaderFrom from the handler (see the package doc)")
	bare := flag.String("bare", "", "instead of the mirror, answer every request with the bytes of this URL: "+
		"servecontent (http.ServeContent from memory), write (headers and one Write): ceilings for net/http; raw: no net/http at all")
	bareURL := flag.String("bare-url", "", "the URL whose bytes -bare serves")
	flag.Parse()
	if *bare != "" {
		serveBare(*listen, *pprofAddr, *bare, *bareURL)
		return
	}
	if *data == "" || *rp == "" {
		log.Fatal("profile: -data and -refpack-upstream are required")
	}
	if *hy == "" {
		*hy = *rp + "/api_v2"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := config.Default()
	cfg.Listen, cfg.Data = *listen, *data
	cfg.RefPackUpstreams, cfg.HydrillaUpstreams = []string{*rp}, []string{*hy}
	cfg.MemoryMaxItem = *memMax
	cfg.LogLevel = "warn"
	lg := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	m, err := proxy.Open(ctx, &cfg, proxy.OpenOptions{Logger: lg, Version: "bench-profile", UserAgent: "regmirror-bench-profile"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	srv := m.Server
	if err := srv.Load(ctx); err != nil {
		log.Fatal(err)
	}
	h := srv.Handler()
	if *singleWrite {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inner.ServeHTTP(writerOnly{w}, r)
		})
	}
	go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	hs := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	log.Printf("profile: mirror on http://%s, pprof on http://%s/debug/pprof/, single-write=%v", *listen, *pprofAddr, *singleWrite)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// As serve does: the fast lane ahead of net/http (unless --fast-lane=false).
	if err := srv.Serve(hs, ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// serveBare answers every request with one body held in memory and the
// headers a mirror sends, the way -bare names: the ceiling of net/http for a
// cached hit on this machine, without any of the mirror's work.
func serveBare(listen, pprofAddr, mode, src string) {
	resp, err := http.Get(src)
	if err != nil {
		log.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	ctype := []string{resp.Header.Get("Content-Type")}
	etag := []string{fmt.Sprintf(`"%x"`, sha256.Sum256(body))}
	clen := []string{strconv.Itoa(len(body))}
	hit, status := []string{"HIT"}, []string{"regmirror; hit"}
	var h http.HandlerFunc
	switch mode {
	case "servecontent":
		h = func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd["Content-Type"], hd["Etag"], hd["X-Cache"], hd["Cache-Status"] = ctype, etag, hit, status
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		}
	case "write":
		h = func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd["Content-Type"], hd["Etag"], hd["X-Cache"], hd["Cache-Status"] = ctype, etag, hit, status
			hd["Content-Length"] = clen
			w.Write(body)
		}
	case "raw":
		// No net/http at all: a loop per connection that skips each request
		// head and writes one constant answer (a Date fixed at start). No
		// validation, no routing: the floor of a Go server on this machine.
		head := fmt.Sprintf("HTTP/1.1 200 OK\r\nCache-Status: %s\r\nContent-Length: %s\r\nContent-Type: %s\r\nEtag: %s\r\nX-Cache: %s\r\nDate: %s\r\n\r\n",
			status[0], clen[0], ctype[0], etag[0], hit[0], time.Now().UTC().Format(http.TimeFormat))
		go func() { log.Println(http.ListenAndServe(pprofAddr, nil)) }()
		log.Printf("profile: bare raw of %d bytes on http://%s", len(body), listen)
		log.Fatal(serveRaw(listen, append([]byte(head), body...)))
	default:
		log.Fatalf("profile: -bare %q: want servecontent, write or raw", mode)
	}
	go func() { log.Println(http.ListenAndServe(pprofAddr, nil)) }()
	log.Printf("profile: bare %s of %d bytes on http://%s", mode, len(body), listen)
	log.Fatal((&http.Server{Addr: listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe())
}

// writerOnly is a ResponseWriter without ReadFrom (nor Flush, nor Unwrap).
type writerOnly struct{ w http.ResponseWriter }

func (o writerOnly) Header() http.Header         { return o.w.Header() }
func (o writerOnly) Write(b []byte) (int, error) { return o.w.Write(b) }
func (o writerOnly) WriteHeader(code int)        { o.w.WriteHeader(code) }

// serveRaw answers every request on listen with answer, without net/http.
func serveRaw(listen string, answer []byte) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			br, bw := bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 8192)
			for {
				for { // the request head: lines up to an empty one
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 {
						break
					}
				}
				bw.Write(answer)
				if br.Buffered() == 0 && bw.Flush() != nil {
					return
				}
			}
		}()
	}
}
