package proxy

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/regmirror/regmirror/apikeys"
	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/hosted"
	"github.com/regmirror/regmirror/hosted/hydrillalocal"
	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/upstream"
)

// Mirror is a wired mirror: its store, upstream pools, metrics and server.
// Open builds it the one way serve, sync, verify, the tests and the
// benchmarks all use.
type Mirror struct {
	Config   *config.Config
	Log      *slog.Logger
	Cache    *cache.Cache
	Fleet    *cache.S3 // the shared bucket, or nil for the local disk store
	Metrics  *Metrics
	RefPack  *upstream.Pool
	Hydrilla *upstream.Pool
	Server   *Server
	// Sync fetches what the upstreams hold ahead of time (sync, serve
	// --sync-interval) through the same engine and store as Server.
	Sync *mirrorsync.Syncer
	// What the mirror hosts itself (nil when not configured).
	Hosted *hosted.RefPack
	Keys   *apikeys.Set
	Local  *hydrillalocal.Repo
}

// OpenOptions are what a mirror needs beyond its configuration.
type OpenOptions struct {
	Logger *slog.Logger // nil: slog.Default()
	// AccessLog, when set, writes the access lines (else they go through Logger).
	AccessLog *AccessLog
	Version   string // shown on the status page
	UserAgent string // sent upstream
	// Clock, when set, is the freshness policy's time source (tests).
	Clock func() time.Time
	// KeepUnnamedBlobs leaves blobs no entry names where they are: verify
	// reports them and only --repair may remove them.
	KeepUnnamedBlobs bool
}

// Open opens the store cfg names (the data directory, or the shared bucket of
// --blob-store), the memory tier and the upstream pools, and builds the
// server. The server is not loaded yet: call m.Server.Load before serving.
func Open(ctx context.Context, cfg *config.Config, o OpenOptions) (*Mirror, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := filepath.Abs(cfg.Data)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var store cache.Store
	var tmp string
	var fleet *cache.S3
	diskBytes := cfg.DiskCacheSize
	if cfg.BlobStore != "" {
		u, err := url.Parse(cfg.BlobStore)
		if err != nil {
			return nil, fmt.Errorf("blob-store: %w", err)
		}
		fleet, err = cache.OpenS3(ctx, cache.S3Options{
			Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: cfg.S3Endpoint, Region: cfg.S3Region,
			PathStyle: cfg.S3PathStyle, LocalDir: filepath.Join(dir, "s3-local"), LocalBytes: cfg.DiskCacheSize,
			LeaseTTL: cfg.S3LeaseTTL, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("blob-store %s: %w", cfg.BlobStore, err)
		}
		// The bucket is shared: eviction must never delete from it. The
		// replica's local tier has its own bound (LocalBytes).
		store, tmp, diskBytes = fleet, fleet.TempDir(), 0
	} else {
		d, err := cache.OpenDisk(dir)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		store, tmp = d, d.TempDir()
	}
	c, err := cache.New(ctx, store, tmp, cache.Options{
		MemoryBytes: cfg.MemoryCacheSize, MemoryMaxItem: cfg.MemoryMaxItem, DiskBytes: diskBytes, Logger: log,
		SweepUnnamedBlobs: fleet == nil && !o.KeepUnnamedBlobs, DeferAccounting: true,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	m := &Mirror{Config: cfg, Log: log, Cache: c, Fleet: fleet}
	m.Metrics = NewMetrics(c)
	m.Metrics.WatchFleet(fleet)
	opts := upstream.Options{
		ConnectTimeout: cfg.UpstreamConnectTimeout, HeaderTimeout: cfg.UpstreamHeaderTimeout,
		MaxFails: cfg.MaxFails, FailTimeout: cfg.FailTimeout, UserAgent: o.UserAgent, Offline: cfg.Offline,
		MaxConns: cfg.UpstreamMaxConns, Observe: m.observe, Logger: log,
		ObserveError: func(u *upstream.Upstream, reason string) {
			m.Metrics.UpstreamErrors.WithLabelValues(u.Base, reason).Inc()
		},
	}
	if cfg.UpstreamCA != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.UpstreamCA)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			c.Close()
			return nil, fmt.Errorf("upstream-ca: %s holds no PEM certificate", cfg.UpstreamCA)
		}
		opts.RootCAs = pool
	}
	if m.RefPack, err = upstream.NewPool("refpack", cfg.RefPackUpstreams, opts); err != nil {
		c.Close()
		return nil, err
	}
	if m.Hydrilla, err = upstream.NewPool("hydrilla", cfg.HydrillaUpstreams, opts); err != nil {
		c.Close()
		return nil, err
	}
	for _, p := range []*upstream.Pool{m.RefPack, m.Hydrilla} {
		for _, u := range p.Upstreams() {
			m.Metrics.UpstreamUp.WithLabelValues(u.Base).Set(1)
		}
	}
	if err := m.openHosted(ctx); err != nil {
		c.Close()
		return nil, err
	}
	m.Server = New(Options{
		Config: cfg, Cache: c, RefPack: m.RefPack, Hydrilla: m.Hydrilla, Metrics: m.Metrics, Logger: log,
		Version: o.Version, Fleet: fleet, AccessLog: o.AccessLog, Clock: o.Clock,
		Hosted: m.Hosted, Keys: m.Keys, Local: m.Local,
	})
	m.Sync = m.Server.newSyncer()
	return m, nil
}

// openHosted opens what the mirror hosts itself: the hosted RefPack owners'
// store (over the mirror's own store, so a fleet shares it), their keys and
// the Hydrilla local repositories; and counts them in
// regmirror_hosted_packages{api}.
func (m *Mirror) openHosted(ctx context.Context) error {
	cfg := m.Config
	var err error
	if cfg.APIKeysFile != "" {
		if m.Keys, err = apikeys.Load(cfg.APIKeysFile); err != nil {
			return fmt.Errorf("api-keys-file: %w", err)
		}
	}
	if len(cfg.HostedOwners) > 0 {
		if m.Hosted, err = hosted.NewRefPack(ctx, m.Cache, hosted.Options{Owners: cfg.HostedOwners, Logger: m.Log}); err != nil {
			return fmt.Errorf("hosted-owner: %w", err)
		}
	}
	if len(cfg.HydrillaLocal) > 0 {
		if m.Local, err = hydrillalocal.Open(cfg.HydrillaLocal, m.Log); err != nil {
			return fmt.Errorf("hydrilla-local: %w", err)
		}
	}
	m.Metrics.WatchHosted(
		func() int {
			if m.Hosted == nil {
				return 0
			}
			return m.Hosted.Packages()
		},
		m.Local.Identifiers)
	return nil
}

// Close closes the store (after the server has stopped serving).
func (m *Mirror) Close() error { return m.Cache.Close() }

// observe counts an upstream request and keeps regmirror_upstream_up current.
func (m *Mirror) observe(u *upstream.Upstream, result string, d time.Duration) {
	m.Metrics.UpstreamRequests.WithLabelValues(u.Base, result).Inc()
	if d > 0 {
		m.Metrics.UpstreamDuration.WithLabelValues(u.Base).Observe(d.Seconds())
	}
	up := 0.0
	if u.Health().Up {
		up = 1
	}
	m.Metrics.UpstreamUp.WithLabelValues(u.Base).Set(up)
}
