// Package config holds regmirror's settings: the Config struct, its defaults,
// loading from flags, REGMIRROR_* environment variables and a YAML file, and
// validation with messages that name the key at fault.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/regmirror/regmirror/apikeys"
	"github.com/regmirror/regmirror/redact"
	"github.com/regmirror/regmirror/refpack"
)

// Default upstreams and addresses (design.md, Command line).
const (
	DefaultListen           = "127.0.0.1:8080"
	DefaultData             = "./regmirror-data"
	DefaultRefPackUpstream  = "https://stor.refwire.online"
	DefaultHydrillaUpstream = "https://hydrilla.koszko.org/api_v2"
)

// Config is every setting of serve, sync and verify.
type Config struct {
	ConfigFile string

	Listen            string
	Data              string
	RefPackUpstreams  []string
	HydrillaUpstreams []string
	Offline           bool
	// FastLane answers repeated cached hits on plain-HTTP connections ahead of
	// net/http (package fastlane).
	FastLane bool

	MemoryCacheSize int64 // bytes; 0 disables the memory tier
	MemoryMaxItem   int64 // largest body held in memory
	DiskCacheSize   int64 // bytes; 0 means no limit

	MetadataMaxAge time.Duration
	NegativeMaxAge time.Duration
	StaleIfError   time.Duration // 0 means stale copies are served for ever
	SyncInterval   time.Duration // 0 means no background sync

	UpstreamConnectTimeout time.Duration
	UpstreamHeaderTimeout  time.Duration
	UpstreamTimeout        time.Duration // a whole fill, body included
	MaxFails               int
	FailTimeout            time.Duration
	// UpstreamMaxConns caps the requests in flight per upstream (design.md,
	// Hostile clients): a client asking distinct misses must not flood it.
	UpstreamMaxConns int
	// WriteIdleTimeout disconnects a client that accepts no byte of an answer
	// for this long; every write moves it, so a slow download is not cut.
	WriteIdleTimeout time.Duration
	UpstreamCA       string

	TLSCert, TLSKey string

	LogFormat string
	LogLevel  string

	MaxUploadSize      int64
	ZipMaxEntries      int
	ZipMaxUncompressed int64
	ZipMaxRatio        float64
	MaxBodySize        int64 // largest upstream body the mirror stores

	BlobStore   string
	S3Endpoint  string
	S3Region    string
	S3PathStyle bool
	S3LeaseTTL  time.Duration

	// HostedOwners are the RefPack owners the mirror is the registry of.
	HostedOwners []string
	// APIKeysFile names the keys that may write hosted owners.
	APIKeysFile string
	// HydrillaLocal are Hydrilla repository directories served first.
	HydrillaLocal []string
}

// Default returns the configuration of `regmirror serve` with no flags.
func Default() Config {
	return Config{
		Listen:            DefaultListen,
		FastLane:          true,
		Data:              DefaultData,
		RefPackUpstreams:  []string{DefaultRefPackUpstream},
		HydrillaUpstreams: []string{DefaultHydrillaUpstream},
		MemoryCacheSize:   256 << 20,
		// Larger bodies are served from their file with sendfile, which beat
		// copying them from memory in bench/run.sh (1 MiB: 1.21× vs 0.95× nginx).
		MemoryMaxItem:          64 << 10,
		MetadataMaxAge:         60 * time.Second,
		NegativeMaxAge:         30 * time.Second,
		UpstreamConnectTimeout: 5 * time.Second,
		UpstreamHeaderTimeout:  30 * time.Second,
		UpstreamTimeout:        5 * time.Minute,
		MaxFails:               3,
		FailTimeout:            30 * time.Second,
		UpstreamMaxConns:       32,
		WriteIdleTimeout:       60 * time.Second,
		LogFormat:              "text",
		LogLevel:               "info",
		MaxUploadSize:          256 << 20,
		ZipMaxEntries:          10000,
		ZipMaxUncompressed:     1 << 30,
		ZipMaxRatio:            200,
		MaxBodySize:            2 << 30,
		S3LeaseTTL:             30 * time.Second,
	}
}

// Validate checks every value and returns all problems, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port (%v)", c.Listen, err)
	}
	if strings.TrimSpace(c.Data) == "" {
		bad("data", "must not be empty")
	}
	for _, u := range c.RefPackUpstreams {
		if err := checkURL(u); err != nil {
			bad("refpack-upstream", "%q: %v", redact.URL(u), err)
		}
	}
	for _, u := range c.HydrillaUpstreams {
		if err := checkURL(u); err != nil {
			bad("hydrilla-upstream", "%q: %v", redact.URL(u), err)
		}
	}
	nonNeg := map[string]time.Duration{
		"metadata-max-age": c.MetadataMaxAge, "negative-max-age": c.NegativeMaxAge,
		"stale-if-error": c.StaleIfError, "sync-interval": c.SyncInterval,
	}
	for k, d := range nonNeg {
		if d < 0 {
			bad(k, "must not be negative")
		}
	}
	pos := map[string]time.Duration{
		"upstream-connect-timeout": c.UpstreamConnectTimeout, "upstream-header-timeout": c.UpstreamHeaderTimeout,
		"upstream-timeout": c.UpstreamTimeout, "fail-timeout": c.FailTimeout, "s3-lease-ttl": c.S3LeaseTTL,
		"write-idle-timeout": c.WriteIdleTimeout,
	}
	for k, d := range pos {
		if d <= 0 {
			bad(k, "must be positive")
		}
	}
	if c.UpstreamMaxConns < 1 {
		bad("upstream-max-conns", "must be at least 1")
	}
	if c.MaxFails < 1 {
		bad("max-fails", "must be at least 1")
	}
	sizes := map[string]int64{"memory-cache-size": c.MemoryCacheSize, "disk-cache-size": c.DiskCacheSize}
	for k, v := range sizes {
		if v < 0 {
			bad(k, "must not be negative")
		}
	}
	if c.MaxUploadSize <= 0 {
		bad("max-upload-size", "must be positive")
	}
	if c.ZipMaxEntries <= 0 {
		bad("zip-max-entries", "must be positive")
	}
	if c.ZipMaxUncompressed <= 0 {
		bad("zip-max-uncompressed", "must be positive")
	}
	if c.ZipMaxRatio < 1 {
		bad("zip-max-ratio", "must be at least 1")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format", "%q: want text or json", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "tls-cert and tls-key must be given together")
	}
	for k, f := range map[string]string{"tls-cert": c.TLSCert, "tls-key": c.TLSKey, "upstream-ca": c.UpstreamCA} {
		if f == "" {
			continue
		}
		if _, err := os.ReadFile(f); err != nil {
			bad(k, "%v", err)
		}
	}
	for _, o := range c.HostedOwners {
		if !refpack.ValidSegment(o) {
			bad("hosted-owner", "%q is not a RefPack owner ([A-Za-z0-9_-], starting and ending alphanumeric)", o)
		}
	}
	if c.APIKeysFile != "" {
		if _, err := apikeys.Load(c.APIKeysFile); err != nil {
			bad("api-keys-file", "%v", err)
		}
	}
	for _, d := range c.HydrillaLocal {
		if fi, err := os.Stat(d); err != nil {
			bad("hydrilla-local", "%v", err)
		} else if !fi.IsDir() {
			bad("hydrilla-local", "%s is not a directory", d)
		}
	}
	if c.BlobStore != "" {
		u, err := url.Parse(c.BlobStore)
		if err != nil || u.Scheme != "s3" || u.Host == "" {
			bad("blob-store", "%q: want s3://BUCKET[/PREFIX]", c.BlobStore)
		}
	}
	return errors.Join(errs...)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("a base URL has no query or fragment")
	}
	return nil
}
