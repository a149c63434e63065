// Command syncfloor holds the two halves of the sync benchmark (bench/sync.sh)
// that are not regmirror:
//
//	syncfloor dump -mappings N [-seed S] -dir D
//	    write a generated Hydrilla repository (hydrilla/hydrillatest) as static
//	    files under D (/list_all, /<type>/<id>/<version>, /file/sha256/<hex>),
//	    for a static web server to serve
//	syncfloor queries -mappings N [-seed S] [-n Q]
//	    print up to Q /query?url=… paths that match mappings of the same
//	    generated repository (spread as bench/upstream's /_queries spreads
//	    them), for wrk and bench/query.lua
//	syncfloor floor -base URL [-jobs J] [-out F]
//	    the floor a sync is measured against: what `regmirror sync --jobs J`
//	    downloads, fetched the same way (/list_all, then every item version
//	    with J at once, each hashed and parsed for the files it names, then
//	    every file with J at once, each hashed), and stored nowhere
//
// floor prints one JSON object: the objects and bytes fetched and the seconds
// it took.
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
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "dump":
		err = dump(os.Args[2:])
	case "queries":
		err = queries(os.Args[2:])
	case "floor":
		err = floor(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "syncfloor %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: syncfloor dump -mappings N [-seed S] -dir D | queries -mappings N [-seed S] [-n Q] | floor -base URL [-jobs J] [-out F]")
	os.Exit(2)
}

func dump(args []string) error {
	fs := flag.NewFlagSet("dump", flag.ExitOnError)
	mappings := fs.Int("mappings", 10000, "mappings to generate")
	seed := fs.Int64("seed", 1, "seed of the generated repository")
	dir := fs.String("dir", "", "folder to write the repository into")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("-dir is required")
	}
	repo := hydrillatest.Generate(*mappings, *seed)
	write := func(path string, b []byte) error {
		p := filepath.Join(*dir, filepath.FromSlash(strings.TrimPrefix(path, "/")))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	// /list_all as the test repository answers it.
	rec := httptest.NewRecorder()
	repo.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/list_all", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("/list_all: %d", rec.Code)
	}
	if err := write("/list_all", rec.Body.Bytes()); err != nil {
		return err
	}
	refs := repo.Refs()
	for _, ref := range refs {
		b, _ := repo.Item(ref)
		if err := write("/"+ref.String(), b); err != nil {
			return err
		}
	}
	files := repo.Files()
	for _, f := range files {
		b, _ := repo.File(f)
		if err := write("/file/sha256/"+f, b); err != nil {
			return err
		}
	}
	fmt.Printf("{\"items\":%d,\"files\":%d}\n", len(refs), len(files))
	return nil
}

func queries(args []string) error {
	fs := flag.NewFlagSet("queries", flag.ExitOnError)
	mappings := fs.Int("mappings", 10000, "mappings of the generated repository")
	seed := fs.Int64("seed", 1, "seed of the generated repository")
	n := fs.Int("n", 5000, "paths to print at most")
	fs.Parse(args)
	urls := hydrillatest.Generate(*mappings, *seed).SampleURLs()
	// A spread of the sample URLs, not just the alphabetically first ones.
	rng := rand.New(rand.NewPCG(uint64(*seed), 11))
	rng.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	w := bufio.NewWriter(os.Stdout)
	for _, u := range urls[:min(*n, len(urls))] {
		fmt.Fprintln(w, "/query?url="+url.QueryEscape(u))
	}
	return w.Flush()
}

func floor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	base := fs.String("base", "", "base URL of the repository")
	jobs := fs.Int("jobs", 4, "objects fetched at once (as sync --jobs)")
	out := fs.String("out", "", "also write the result here")
	fs.Parse(args)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *jobs * 2}}
	var bytes atomic.Int64
	// get fetches path and hashes it (checking the hash against want, as the
	// mirror checks a file), keeping the bytes when keep says so.
	get := func(path, want string, keep bool) ([]byte, error) {
		resp, err := client.Get(strings.TrimSuffix(*base, "/") + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", path, resp.Status)
		}
		h := sha256.New()
		var b []byte
		if keep {
			if b, err = io.ReadAll(resp.Body); err == nil {
				h.Write(b)
			}
		} else {
			_, err = io.Copy(h, resp.Body)
		}
		if err != nil {
			return nil, err
		}
		if got := hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
			return nil, fmt.Errorf("%s: sha256 %s", path, got)
		}
		bytes.Add(max(resp.ContentLength, int64(len(b))))
		return b, nil
	}
	start := time.Now()
	body, err := get("/list_all", "", true)
	if err != nil {
		return err
	}
	list, err := hydrilla.ParseList(body)
	if err != nil {
		return err
	}
	refs := list.Refs()
	var mu sync.Mutex
	seen := map[string]bool{}
	var files []string
	err = parallel(*jobs, len(refs), func(i int) error {
		b, err := get("/"+refs[i].String(), "", true)
		if err != nil {
			return err
		}
		it, err := hydrilla.CheckItem(b, refs[i])
		if err != nil {
			return err
		}
		mu.Lock()
		for _, f := range it.Files {
			if !seen[f.SHA256] {
				seen[f.SHA256] = true
				files = append(files, f.SHA256)
			}
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	err = parallel(*jobs, len(files), func(i int) error {
		_, err := get("/file/sha256/"+files[i], files[i], false)
		return err
	})
	if err != nil {
		return err
	}
	res, _ := json.Marshal(map[string]any{
		"name": "floor", "items": len(refs), "files": len(files), "bytes": bytes.Load(),
		"jobs": *jobs, "seconds": time.Since(start).Seconds(),
	})
	fmt.Println(string(res))
	if *out != "" {
		return os.WriteFile(*out, append(res, '\n'), 0o644)
	}
	return nil
}

// parallel runs fn(0..n-1) on jobs goroutines; the first error stops it.
func parallel(jobs, n int, fn func(int) error) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(jobs, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}
