package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/proxy"
	"github.com/regmirror/regmirror/upstream"
)

// mirror is everything serve, sync and verify share: the store and the pools.
type mirror struct {
	cfg      *config.Config
	log      *slog.Logger
	cache    *cache.Cache
	fleet    *cache.S3 // the shared bucket, or nil for the local disk store
	metrics  *proxy.Metrics
	refpack  *upstream.Pool
	hydrilla *upstream.Pool
}

func newLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// openMirror opens the store and builds the upstream pools from cfg.
func openMirror(ctx context.Context, cfg *config.Config, log *slog.Logger) (*mirror, error) {
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
		SweepUnnamedBlobs: fleet == nil, DeferAccounting: true,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	m := &mirror{cfg: cfg, log: log, cache: c, fleet: fleet}
	m.metrics = proxy.NewMetrics(c)
	m.metrics.WatchFleet(fleet)
	opts := upstream.Options{
		ConnectTimeout: cfg.UpstreamConnectTimeout, HeaderTimeout: cfg.UpstreamHeaderTimeout,
		MaxFails: cfg.MaxFails, FailTimeout: cfg.FailTimeout, UserAgent: userAgent(), Offline: cfg.Offline,
		Observe: m.observe,
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
	if m.refpack, err = upstream.NewPool("refpack", cfg.RefPackUpstreams, opts); err != nil {
		c.Close()
		return nil, err
	}
	if m.hydrilla, err = upstream.NewPool("hydrilla", cfg.HydrillaUpstreams, opts); err != nil {
		c.Close()
		return nil, err
	}
	for _, p := range []*upstream.Pool{m.refpack, m.hydrilla} {
		for _, u := range p.Upstreams() {
			m.metrics.UpstreamUp.WithLabelValues(u.Base).Set(1)
		}
	}
	return m, nil
}

// server builds the loaded server that serve and sync share.
func (m *mirror) server(ctx context.Context) (*proxy.Server, error) {
	srv := proxy.New(proxy.Options{
		Config: m.cfg, Cache: m.cache, RefPack: m.refpack, Hydrilla: m.hydrilla,
		Metrics: m.metrics, Logger: m.log, Version: versionString(), Fleet: m.fleet,
		AccessLog: proxy.NewAccessLog(os.Stderr, m.cfg.LogFormat == "json"),
	})
	if err := srv.Load(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

func (m *mirror) observe(u *upstream.Upstream, result string, d time.Duration) {
	m.metrics.UpstreamRequests.WithLabelValues(u.Base, result).Inc()
	if d > 0 {
		m.metrics.UpstreamDuration.WithLabelValues(u.Base).Observe(d.Seconds())
	}
	up := 0.0
	if u.Health().Up {
		up = 1
	}
	m.metrics.UpstreamUp.WithLabelValues(u.Base).Set(up)
}

func serve(c *cli.Context) error {
	cfg, _, err := config.FromContext(c)
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	m, err := openMirror(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer m.cache.Close()
	srv, err := m.server(ctx)
	if err != nil {
		return err
	}
	if cfg.SyncInterval > 0 {
		go srv.SyncEvery(ctx, cfg.SyncInterval, proxy.SyncOptions{Jobs: 4})
	}
	hs := &http.Server{
		Handler:           srv.Handler(), // set again by srv.Serve for plain HTTP
		ReadHeaderTimeout: 10 * time.Second,
		// Uploads get a generous whole-request read limit; slow clients are cut off.
		ReadTimeout:    5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("regmirror serving", "addr", ln.Addr().String(), "data", cfg.Data,
		"refpack", cfg.RefPackUpstreams, "hydrilla", cfg.HydrillaUpstreams, "offline", cfg.Offline)
	errc := make(chan error, 1)
	if cfg.TLSCert != "" {
		certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return err
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				if err := certs.reload(); err != nil {
					log.Error("SIGHUP: TLS certificate not reloaded", "err", err)
				} else {
					log.Info("SIGHUP: TLS certificate reloaded")
				}
			}
		}()
	}
	go func() {
		if cfg.TLSCert != "" {
			// HTTP/2 is negotiated by ServeTLS; the certificate comes from GetCertificate.
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			// Plain HTTP: repeated cached hits may be answered on the fast lane.
			errc <- srv.Serve(hs, ln)
		}
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests")
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("shutdown", "err", err)
		}
		// Serve returns once the fast lane's connections have closed too;
		// only then may the store close.
		select {
		case <-errc:
		case <-sctx.Done():
		}
	}
	return nil
}
