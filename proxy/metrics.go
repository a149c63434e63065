package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/upstream"
)

// Metrics are the mirror's Prometheus series; their names are part of the
// contract (design.md, Metrics).
type Metrics struct {
	Registry         *prometheus.Registry
	Requests         *prometheus.CounterVec
	RequestDuration  *prometheus.HistogramVec
	UpstreamRequests *prometheus.CounterVec
	UpstreamErrors   *prometheus.CounterVec
	UpstreamDuration *prometheus.HistogramVec
	UpstreamUp       *prometheus.GaugeVec
	StaleServed      prometheus.Counter
	VerifyFailures   prometheus.Counter
	Coalesced        prometheus.Counter
	StoreErrors      *prometheus.CounterVec
	PatternIndex     prometheus.Gauge
	SyncLastSuccess  *prometheus.GaugeVec
	FastLane         prometheus.Counter
	fleetWatched     bool
	upstreamsWatched bool
	hostedWatched    bool
}

// WatchUpstreams adds the request queues of the pools' upstreams
// (--upstream-max-conns) to the metrics: regmirror_upstream_queued{upstream},
// the requests waiting for a slot, and regmirror_upstream_refused_total{upstream},
// those answered 503 after waiting in vain.
func (m *Metrics) WatchUpstreams(pools ...*upstream.Pool) {
	if m.upstreamsWatched {
		return
	}
	m.upstreamsWatched = true
	m.Registry.MustRegister(&upstreamQueues{pools: pools,
		queued: prometheus.NewDesc("regmirror_upstream_queued",
			"Requests waiting for one of the upstream's --upstream-max-conns slots.", []string{"upstream"}, nil),
		refused: prometheus.NewDesc("regmirror_upstream_refused_total",
			"Requests answered 503 after waiting the whole queue timeout for a slot of the upstream.", []string{"upstream"}, nil),
	})
}

// upstreamQueues reads the queue figures off the upstreams at each scrape.
type upstreamQueues struct {
	pools           []*upstream.Pool
	queued, refused *prometheus.Desc
}

func (q *upstreamQueues) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.queued
	ch <- q.refused
}

func (q *upstreamQueues) Collect(ch chan<- prometheus.Metric) {
	// Keyed by the label: one upstream may serve both APIs.
	queued, refused := map[string]float64{}, map[string]float64{}
	for _, p := range q.pools {
		if p == nil {
			continue
		}
		for _, u := range p.Upstreams() {
			queued[u.Base] += float64(u.Queued())
			refused[u.Base] += float64(u.Refused())
		}
	}
	for k, v := range queued {
		ch <- prometheus.MustNewConstMetric(q.queued, prometheus.GaugeValue, v, k)
		ch <- prometheus.MustNewConstMetric(q.refused, prometheus.CounterValue, refused[k], k)
	}
}

// WatchHosted adds regmirror_hosted_packages{api}: the packages the mirror
// hosts itself (RefPack packages of the hosted owners; Hydrilla item
// identifiers of the local repository), read when scraped.
func (m *Metrics) WatchHosted(refpack, hydrilla func() int) {
	if m.hostedWatched {
		return
	}
	m.hostedWatched = true
	for api, f := range map[string]func() int{"refpack": refpack, "hydrilla": hydrilla} {
		m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "regmirror_hosted_packages", Help: "Packages the mirror hosts itself, by API.",
			ConstLabels: prometheus.Labels{"api": api},
		}, func() float64 { return float64(f()) }))
	}
}

// WatchFleet adds the shared bucket's health to the metrics:
// regmirror_blob_store_up (1 for the local disk store) and the bucket's errors.
func (m *Metrics) WatchFleet(f *cache.S3) {
	if m.fleetWatched {
		return
	}
	m.fleetWatched = true
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "regmirror_blob_store_up", Help: "1 when the blob store answers (always 1 for the local disk store).",
	}, func() float64 {
		if f == nil || f.Up() {
			return 1
		}
		return 0
	}))
	if f != nil {
		m.Registry.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regmirror_blob_store_fail_open_total",
				Help: "Misses fetched from the upstream directly because the shared bucket did not answer."},
				func() float64 { return float64(f.Stats().FillFailOpen) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regmirror_blob_store_shared_fills_total",
				Help: "Misses answered from an entry another replica filled."},
				func() float64 { return float64(f.Stats().FillShared) }),
		)
	}
}

// NewMetrics registers every series; the cache gauges read c when scraped.
func NewMetrics(c *cache.Cache) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_requests_total", Help: "Requests answered, by API, route, status code and cache result.",
		}, []string{"api", "route", "code", "cache"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "regmirror_request_duration_seconds", Help: "Time to answer a request.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"api", "cache"}),
		UpstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_requests_total", Help: "Requests made to upstreams, by result.",
		}, []string{"upstream", "result"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_errors_total", Help: "Upstream failures, by reason: timeout, connect, status (5xx), body, busy.",
		}, []string{"upstream", "reason"}),
		UpstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "regmirror_upstream_request_duration_seconds", Help: "Time to an upstream's response headers.",
			Buckets: prometheus.DefBuckets,
		}, []string{"upstream"}),
		UpstreamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmirror_upstream_up", Help: "1 when the upstream's last request succeeded, 0 when it is failing or skipped.",
		}, []string{"upstream"}),
		StaleServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_stale_served_total", Help: "Stored answers served stale because every upstream failed.",
		}),
		VerifyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_verify_failures_total", Help: "Upstream bodies refused by verification (checksum, zip layout, identity).",
		}),
		Coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_coalesced_requests_total", Help: "Requests that waited for another request's upstream fetch instead of making their own.",
		}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_blob_store_errors_total", Help: "Errors writing or reading the store, by operation.",
		}, []string{"op"}),
		PatternIndex: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_pattern_index_patterns", Help: "URL patterns in the query index.",
		}),
		SyncLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmirror_sync_last_success_timestamp_seconds", Help: "When the last successful sync of an upstream ended.",
		}, []string{"api", "upstream"}),
		FastLane: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_fast_lane_answers_total", Help: "Cached hits answered on the fast lane (also counted in regmirror_requests_total).",
		}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.UpstreamRequests, m.UpstreamErrors, m.UpstreamDuration, m.UpstreamUp,
		m.StaleServed, m.VerifyFailures, m.Coalesced, m.StoreErrors, m.PatternIndex, m.SyncLastSuccess, m.FastLane,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regmirror_cache_size_bytes", Help: "Bytes held, by tier.", ConstLabels: prometheus.Labels{"tier": "disk"}},
				func() float64 { return float64(c.Stats().DiskBytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regmirror_cache_size_bytes", Help: "Bytes held, by tier.", ConstLabels: prometheus.Labels{"tier": "memory"}},
				func() float64 { return float64(c.Stats().MemoryBytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regmirror_cache_entries", Help: "Entries held, by tier.", ConstLabels: prometheus.Labels{"tier": "disk"}},
				func() float64 { return float64(c.Stats().DiskEntries) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regmirror_cache_entries", Help: "Entries held, by tier.", ConstLabels: prometheus.Labels{"tier": "memory"}},
				func() float64 { return float64(c.Stats().MemoryEntries) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regmirror_evictions_total", Help: "Entries evicted from the disk and memory tiers."},
				func() float64 { return float64(c.Stats().Evictions) }),
		)
	}
	return m
}
