// Package proxy holds the HTTP handlers of both registry APIs: routing, input
// validation, what each route asks of the read-through engine (package
// engine: freshness, coalesced and verified fills, stale answers, cache
// headers) and how it answers, and the mirror's own endpoints. Open wires a
// whole mirror.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regmirror/regmirror/apikeys"
	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/catalogue"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hosted"
	"github.com/regmirror/regmirror/hosted/hydrillalocal"
	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/status"
	"github.com/regmirror/regmirror/upstream"
)

// Options wire a Server.
type Options struct {
	Config   *config.Config
	Cache    *cache.Cache
	RefPack  *upstream.Pool
	Hydrilla *upstream.Pool
	Metrics  *Metrics
	Logger   *slog.Logger
	Version  string
	// Fleet is the shared bucket when replicas share one (nil: local disk). Fills
	// then take a lease in it, so the fleet fetches each object once.
	Fleet *cache.S3
	// AccessLog, when set, writes the access lines (else they go through Logger).
	AccessLog *AccessLog
	// Clock, when set, is the freshness policy's time source (tests move it
	// instead of sleeping past max-age).
	Clock func() time.Time
	// Hosted is the store of the hosted RefPack owners (nil: none).
	Hosted *hosted.RefPack
	// Keys may write hosted owners (nil: no keys file, every hosted write 401).
	Keys *apikeys.Set
	// Local is the Hydrilla local repository (nil: none).
	Local *hydrillalocal.Repo
}

// maxConcurrentUploads bounds pushes spooled at once (each up to max-upload-size).
const maxConcurrentUploads = 4

// Server answers both APIs and the mirror's own endpoints.
type Server struct {
	cfg      *config.Config
	cache    *cache.Cache
	refpack  *upstream.Pool
	hydrilla *upstream.Pool
	metrics  *Metrics
	log      *slog.Logger
	version  string
	started  time.Time
	limits   refpack.Limits
	fleet    *cache.S3
	access   *AccessLog
	accessOn bool // the logger's level lets access lines (info) through

	eng     *engine.Engine
	mux     *http.ServeMux
	hy      *catalogue.Catalogue
	ready   atomic.Bool
	stat    status.Board  // what the status page shows beyond the metrics
	uploads chan struct{} // a slot per push being spooled and checked
	fast    *fastHits     // what the fast lane answers; nil without it (Serve)

	hosted *hosted.RefPack     // hosted RefPack owners; nil without --hosted-owner
	keys   *apikeys.Set        // keys of the hosted owners; nil without --api-keys-file
	local  *hydrillalocal.Repo // Hydrilla local repository; nil without --hydrilla-local
}

// New builds a Server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(o.Cache)
	}
	o.Metrics.WatchUpstreams(o.RefPack, o.Hydrilla)
	s := &Server{
		cfg: o.Config, cache: o.Cache, refpack: o.RefPack, hydrilla: o.Hydrilla,
		metrics: o.Metrics, log: o.Logger, version: o.Version, started: time.Now(), fleet: o.Fleet,
		access: o.AccessLog, accessOn: o.Logger.Enabled(context.Background(), slog.LevelInfo),
		hosted: o.Hosted, keys: o.Keys, local: o.Local,
	}
	s.uploads = make(chan struct{}, maxConcurrentUploads)
	s.limits = refpack.Limits{
		MaxEntries:           o.Config.ZipMaxEntries,
		MaxTotalUncompressed: o.Config.ZipMaxUncompressed,
		MaxRatio:             o.Config.ZipMaxRatio,
		MaxUploadBytes:       o.Config.MaxUploadSize,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	s.mux = mux
	if o.Config.FastLane {
		s.fast = newFastHits(s)
	}
	s.hy = catalogue.New(func(n int) { s.metrics.PatternIndex.Set(float64(n)) })
	s.eng = engine.New(engine.Options{
		Cache: o.Cache,
		Policy: &engine.Policy{MetadataMaxAge: o.Config.MetadataMaxAge, NegativeMaxAge: o.Config.NegativeMaxAge,
			StaleIfError: o.Config.StaleIfError, Clock: o.Clock},
		Fleet: o.Fleet, UpstreamTimeout: o.Config.UpstreamTimeout, MaxBodySize: o.Config.MaxBodySize,
		Counters: engine.Counters{StaleServed: s.metrics.StaleServed, VerifyFailures: s.metrics.VerifyFailures,
			Coalesced: s.metrics.Coalesced, StoreErrors: s.metrics.StoreErrors},
		Logger: o.Logger, NoteError: s.noteError,
	})
	return s
}

// Load reads the Hydrilla catalogue and builds the pattern index from what the
// store holds, then keeps the index current until ctx ends. /readyz answers
// ready once it has loaded.
func (s *Server) Load(ctx context.Context) error { return s.load(ctx, true) }

// LoadForSync is Load for `regmirror sync`, whose pattern index nothing
// queries: it is not rebuilt as items arrive (a sync of thousands of
// mappings would rebuild it every few hundred milliseconds), and the
// catalogue is neither read nor kept (at 100,000 mappings, a few hundred
// megabytes); the serve that opens the store later reads it from there.
func (s *Server) LoadForSync(ctx context.Context) error { return s.load(ctx, false) }

func (s *Server) load(ctx context.Context, liveIndex bool) error {
	// Loading a large catalogue allocates much and keeps most of it: collecting
	// less often meanwhile shortens the time to ready by a good part.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	if !liveIndex {
		// Nothing is answered from the catalogue of a sync: it is neither
		// read nor kept (catalogue.IgnoreNotes).
		s.hy.IgnoreNotes()
	} else if err := s.hy.Load(ctx, s.cache.Store()); err != nil {
		return fmt.Errorf("load hydrilla catalogue: %w", err)
	}
	s.ready.Store(true)
	// The size accounting waited (Options.DeferAccounting) so the catalogue had
	// both cores; it is not needed to answer requests.
	s.cache.StartAccounting()
	if liveIndex {
		go func() {
			s.cache.WaitLoaded()
			// What start-up decoded and let go of (the catalogue's records,
			// collected less often meanwhile, and the accounting's) would
			// otherwise stay resident until the runtime hands it back bit by
			// bit: return it now, once.
			debug.FreeOSMemory()
		}()
		go s.hy.Run(ctx)
	}
	if s.fleet != nil {
		go s.refreshCatalogueEvery(ctx, fleetCatalogueRefresh)
	}
	return nil
}

// fleetCatalogueRefresh is how often a replica on a shared bucket looks for
// syncs recorded there by other processes.
const fleetCatalogueRefresh = 5 * time.Second

// refreshCatalogueEvery keeps the Hydrilla catalogue (pattern index, held
// lists, sync records) up to date with what other processes sync into the
// shared bucket, until ctx ends.
func (s *Server) refreshCatalogueEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var bases []string
		for _, u := range s.hydrilla.Upstreams() {
			bases = append(bases, u.Base)
		}
		if err := s.hy.RefreshFromStore(ctx, s.cache.Store(), bases); err != nil && ctx.Err() == nil {
			s.log.Warn("refresh the Hydrilla catalogue from the shared bucket", "err", err)
		}
	}
}

// Metrics returns the server's metrics (for wiring upstream observers).
func (s *Server) Metrics() *Metrics { return s.metrics }

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("loading\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// ServeHTTP routes a request. RefPack paths start with /packages; the mirror's
// own endpoints are matched exactly; everything else is the Hydrilla API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	// The RefPack CLI joins an API URL that ends in "/" into "//packages/…".
	for strings.HasPrefix(p, "//") {
		p = p[1:]
	}
	switch {
	case p == "/packages" || strings.HasPrefix(p, "/packages/"):
		s.serveRefPack(w, r, p)
	case p == "/healthz" || p == "/readyz" || p == "/metrics":
		s.mux.ServeHTTP(w, r)
	default:
		s.serveHydrilla(w, r, p)
	}
}
