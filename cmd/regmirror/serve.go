package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/proxy"
	"github.com/regmirror/regmirror/redact"
	"github.com/regmirror/regmirror/writeidle"
)

func newLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// openMirror opens the store and the upstream pools and builds the server:
// proxy.Open, as every test and benchmark builds it.
func openMirror(ctx context.Context, cfg *config.Config, log *slog.Logger) (*proxy.Mirror, error) {
	return proxy.Open(ctx, cfg, mirrorOptions(cfg, log))
}

// mirrorOptions are what every command opens the mirror with.
func mirrorOptions(cfg *config.Config, log *slog.Logger) proxy.OpenOptions {
	return proxy.OpenOptions{
		Logger: log, Version: versionString(), UserAgent: userAgent(),
		AccessLog: proxy.NewAccessLog(os.Stderr, cfg.LogFormat == "json"),
	}
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
	defer m.Close()
	srv := m.Server
	if err := srv.Load(ctx); err != nil {
		return err
	}
	if cfg.SyncInterval > 0 {
		go m.Sync.Every(ctx, cfg.SyncInterval, mirrorsync.Options{Jobs: 4})
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
		"refpack", redact.URL(strings.Join(cfg.RefPackUpstreams, ",")),
		"hydrilla", redact.URL(strings.Join(cfg.HydrillaUpstreams, ",")), "offline", cfg.Offline)
	errc := make(chan error, 1)
	var certs *certReloader
	if cfg.TLSCert != "" {
		if certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return err
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	}
	// SIGHUP reloads the TLS certificate, the API keys file, the Hydrilla local
	// repositories and the hosted packages index; without any of them it keeps
	// its default meaning.
	if hosting := cfg.APIKeysFile != "" || len(cfg.HydrillaLocal) > 0 || len(cfg.HostedOwners) > 0; certs != nil || hosting {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				if certs != nil {
					if err := certs.reload(); err != nil {
						log.Error("SIGHUP: TLS certificate not reloaded", "err", err)
					} else {
						log.Info("SIGHUP: TLS certificate reloaded")
					}
				}
				if hosting {
					if err := srv.Reload(ctx); err != nil {
						log.Error("SIGHUP: hosted content not (all) reloaded; what failed keeps its previous state", "err", err)
					} else {
						log.Info("SIGHUP: API keys, Hydrilla local repositories and hosted packages reloaded")
					}
				}
			}
		}()
	}
	go func() {
		if cfg.TLSCert != "" {
			// HTTP/2 is negotiated by ServeTLS; the certificate comes from GetCertificate.
			errc <- hs.ServeTLS(writeidle.Listener(ln, cfg.WriteIdleTimeout), "", "")
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
