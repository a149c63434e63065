// Command upstream is the local upstream of the benchmark suite (bench/run.sh):
// one listener on 127.0.0.1 serving generated RefPack packages (refpack/registrytest)
// under /packages and a generated Hydrilla repository (hydrilla/hydrillatest)
// under -prefix, and counting every request it answers.
//
// RefPack packages (with -refpack-bench, the default):
//
//	bench/doc@1.0.0        a package whose /meta is -meta-size bytes (1 KiB)
//	bench/zip@1.0.0        a package whose zip is -zip-size bytes (1 MiB)
//	bench/stampede-NN@1.0.0 -stampede-ids more zips of -zip-size, never requested
//	                       before a stampede round
//
// and -packages generated packages sync/pkg-NNNN with -versions versions each.
//
// Control endpoints (not part of either API):
//
//	GET  /_count[?prefix=P]  requests answered so far: {"total":N,"prefix":P,"count":M,"by":{...}}
//	POST /_reset             forget the counts
//	GET  /_files             the -files extra Hydrilla file digests, one a line
//	GET  /_queries[?n=N]     up to N /query?url=… paths (without -prefix) that match
//	GET  /_info              sizes of the benchmark objects, as JSON
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (127.0.0.1 only)")
	addrFile := flag.String("addr-file", "", "write the address actually listened on to this file once serving")
	mappings := flag.Int("mappings", 100, "Hydrilla mappings to generate (0: no Hydrilla repository)")
	seed := flag.Int64("seed", 1, "seed of the generated Hydrilla repository")
	prefix := flag.String("prefix", "/api_v2", "path prefix of the Hydrilla repository")
	delay := flag.Duration("delay", 0, "delay every API answer by this much (a slowed upstream)")
	zipSize := flag.Int("zip-size", 1<<20, "size in bytes of the benchmark zips (bench/zip, bench/stampede-N)")
	metaSize := flag.Int("meta-size", 1024, "size in bytes of bench/doc's /meta document")
	stampedeIDs := flag.Int("stampede-ids", 3, "how many bench/stampede-N packages to publish")
	refpackBench := flag.Bool("refpack-bench", true, "publish the bench/* RefPack packages")
	packages := flag.Int("packages", 0, "generated RefPack packages sync/pkg-NNNN (for the sync benchmark)")
	versions := flag.Int("versions", 3, "versions of each generated RefPack package")
	files := flag.Int("files", 0, "extra Hydrilla files of -file-size bytes, listed at /_files")
	fileSize := flag.Int("file-size", 16<<10, "size in bytes of each extra Hydrilla file")
	flag.Parse()

	host, _, err := net.SplitHostPort(*listen)
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		log.Fatalf("upstream: -listen must be on 127.0.0.1, got %q", *listen)
	}

	start := time.Now()
	reg := registrytest.New()
	info := map[string]any{}
	if *refpackBench {
		info["meta"] = addMetaPackage(reg, "bench", "doc", *metaSize)
		info["zip"] = addZipPackage(reg, "bench", "zip", *zipSize, 1)
		for i := 1; i <= *stampedeIDs; i++ {
			addZipPackage(reg, "bench", fmt.Sprintf("stampede-%02d", i), *zipSize, uint64(100+i))
		}
	}
	for i := 0; i < *packages; i++ {
		name := fmt.Sprintf("pkg-%04d", i)
		for v := 0; v < *versions; v++ {
			reg.AddPackage("sync", name, fmt.Sprintf("1.%d.0", v),
				registrytest.WithTitle("Generated package "+name),
				registrytest.WithDescription("A generated package for the RefPack sync benchmark."),
				registrytest.WithTags("bench", "generated"),
				registrytest.WithDocs())
		}
	}

	var repo *hydrillatest.Repo
	var extraFiles []string
	if *mappings > 0 || *files > 0 {
		repo = hydrillatest.Generate(*mappings, *seed)
		repo.SetPrefix(*prefix)
		rng := rand.New(rand.NewPCG(uint64(*seed), 7))
		for i := 0; i < *files; i++ {
			b := make([]byte, *fileSize)
			for j := range b {
				b[j] = byte('a' + rng.IntN(26))
			}
			copy(b, fmt.Sprintf("extra file %d\n", i))
			extraFiles = append(extraFiles, repo.AddFile(b))
		}
	}
	if *delay > 0 {
		reg.SetDelay(*delay)
		if repo != nil {
			repo.SetDelay(*delay)
		}
	}
	info["mappings"] = *mappings
	info["packages"] = *packages
	info["generated_in"] = time.Since(start).Round(time.Millisecond).String()

	c := &counter{by: map[string]int64{}}
	var hy http.Handler = http.NotFoundHandler()
	if repo != nil {
		hy = repo.Handler()
	}
	var queries []string
	var queriesOnce sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_count", c.serve)
	mux.HandleFunc("POST /_reset", func(w http.ResponseWriter, _ *http.Request) { c.reset(); w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /_files", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for _, f := range extraFiles {
			fmt.Fprintln(w, f)
		}
	})
	mux.HandleFunc("GET /_queries", func(w http.ResponseWriter, r *http.Request) {
		if repo == nil {
			http.NotFound(w, r)
			return
		}
		queriesOnce.Do(func() {
			urls := repo.SampleURLs()
			// A spread of the sample URLs, not just the alphabetically first ones.
			rng := rand.New(rand.NewPCG(uint64(*seed), 11))
			rng.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
			for _, u := range urls {
				queries = append(queries, "/query?url="+url.QueryEscape(u))
			}
		})
		n := len(queries)
		if v, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && v < n {
			n = v
		}
		w.Header().Set("Content-Type", "text/plain")
		for _, q := range queries[:n] {
			fmt.Fprintln(w, q)
		}
	})
	mux.HandleFunc("GET /_info", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(info)
	})

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/_"):
			mux.ServeHTTP(w, r)
		case p == "/packages" || strings.HasPrefix(p, "/packages/") || strings.HasPrefix(p, "//packages"):
			c.add(p)
			reg.ServeHTTP(w, r)
		default:
			// Hydrilla paths are counted by their first segment after the prefix
			// (/api_v2/file, /api_v2/mapping …): a sync makes hundreds of
			// thousands of distinct paths.
			rest := strings.TrimPrefix(p, *prefix)
			seg, _, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
			c.add(*prefix + "/" + seg)
			hy.ServeHTTP(w, r)
		}
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("upstream: %v", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatalf("upstream: %v", err)
		}
	}
	log.Printf("upstream: serving on http://%s (RefPack at /packages, Hydrilla at %s), generated in %s",
		ln.Addr(), *prefix, info["generated_in"])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		reg.Close()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("upstream: %v", err)
	}
}

// counter counts answered requests: a total and a count per key.
type counter struct {
	total atomic.Int64
	mu    sync.Mutex
	by    map[string]int64
}

func (c *counter) add(key string) {
	c.total.Add(1)
	c.mu.Lock()
	c.by[key]++
	c.mu.Unlock()
}

func (c *counter) reset() {
	c.mu.Lock()
	c.total.Store(0)
	c.by = map[string]int64{}
	c.mu.Unlock()
}

func (c *counter) serve(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	c.mu.Lock()
	by := make(map[string]int64, len(c.by))
	var n int64
	for k, v := range c.by {
		by[k] = v
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	c.mu.Unlock()
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Total  int64            `json:"total"`
		Prefix string           `json:"prefix"`
		Count  int64            `json:"count"`
		By     map[string]int64 `json:"by"`
	}{c.total.Load(), prefix, n, by})
}

// addMetaPackage publishes owner/name@1.0.0 with a description padded so that
// the registry's /meta answer is size bytes, and returns that size.
func addMetaPackage(reg *registrytest.Registry, owner, name string, size int) int {
	pad := 0
	for range 3 {
		desc := "Benchmark package: its /meta document is about one kibibyte. " + strings.Repeat("x", pad)
		reg.AddPackage(owner, name, "1.0.0", registrytest.WithTitle("Benchmark document"),
			registrytest.WithDescription(desc), registrytest.WithTags("bench", "meta"),
			registrytest.WithAuthors("regmirror bench"), registrytest.WithLicense("CC0-1.0"))
		got := len(get(reg, "/packages/"+owner+"/"+name+"/meta?version=1.0.0"))
		if got == size || pad+size-got < 0 {
			return got
		}
		pad += size - got
	}
	return len(get(reg, "/packages/"+owner+"/"+name+"/meta?version=1.0.0"))
}

// addZipPackage publishes owner/name@1.0.0 whose zip (entries stored, an
// incompressible asset) is size bytes, and returns that size.
func addZipPackage(reg *registrytest.Registry, owner, name string, size int, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 3))
	asset := make([]byte, size)
	for i := range asset {
		asset[i] = byte(rng.Uint32())
	}
	n := max(0, size-2048)
	for range 3 {
		reg.AddPackage(owner, name, "1.0.0", registrytest.Stored(), registrytest.WithTitle("Benchmark zip"),
			registrytest.WithAsset("blob.bin", asset[:n]))
		got := len(reg.Zip(owner+"/"+name, "1.0.0"))
		if got == size || n+size-got < 0 {
			return got
		}
		n += size - got
	}
	return len(reg.Zip(owner+"/"+name, "1.0.0"))
}

func get(h http.Handler, target string) []byte {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	if rec.Code != http.StatusOK {
		log.Fatalf("upstream: GET %s: %d %s", target, rec.Code, bytes.TrimSpace(rec.Body.Bytes()))
	}
	return rec.Body.Bytes()
}
