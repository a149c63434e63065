package mirrorsync_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/proxy"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// mirror is a whole mirror, wired by proxy.Open as serve and sync wire it,
// served on 127.0.0.1 so a sync's results can be read back through the API.
type mirror struct {
	URL   string
	sync  *mirrorsync.Syncer
	cache *cache.Cache
}

// startMirror opens a mirror of the given upstreams in a new temp dir.
func startMirror(t *testing.T, refpackUps, hydrillaUps []string, opts ...func(*config.Config)) *mirror {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.RefPackUpstreams = refpackUps
	cfg.HydrillaUpstreams = hydrillaUps
	cfg.UpstreamTimeout = 10 * time.Second
	cfg.UpstreamHeaderTimeout = 5 * time.Second
	cfg.UpstreamConnectTimeout = 2 * time.Second
	cfg.MemoryCacheSize = 16 << 20
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	wired, err := proxy.Open(context.Background(), &cfg, proxy.OpenOptions{Logger: log, Version: "test", UserAgent: "regmirror/test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := wired.Server.Load(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(wired.Server.Handler())
	t.Cleanup(func() {
		hs.Close()
		cancel()
		wired.Close()
	})
	return &mirror{URL: hs.URL, sync: wired.Sync, cache: wired.Cache}
}

type result struct {
	Status int
	Header http.Header
	Body   []byte
}

func get(t *testing.T, url string) result {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

// bigPackage adds a package whose zip is about size bytes of incompressible data.
func bigPackage(reg *registrytest.Registry, name string, size int) {
	raw := make([]byte, size*3/4)
	rand.Read(raw)
	data := fmt.Sprintf(`[{"blob":%q}]`, base64.StdEncoding.EncodeToString(raw))
	reg.AddPackage("big", name, "1.0.0", registrytest.WithData([]byte(data)))
}
