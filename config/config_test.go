package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// load runs a one-command app with the serve flags over args and returns
// what FromContext made of them.
func load(t *testing.T, args ...string) (*Config, []Setting, error) {
	t.Helper()
	flags := Flags()
	var cfg *Config
	var settings []Setting
	var ferr error
	app := &cli.App{Name: "regmirror", Commands: []*cli.Command{{
		Name: "serve", Flags: flags, Before: Before(flags),
		Action: func(c *cli.Context) error {
			cfg, settings, ferr = FromContext(c)
			return nil
		},
	}}}
	argv := append([]string{"regmirror", "serve"}, args...)
	CommandLine = func() []string { return argv }
	defer func() { CommandLine = func() []string { return os.Args } }()
	if err := app.Run(argv); err != nil {
		return nil, nil, err
	}
	return cfg, settings, ferr
}

func source(settings []Setting, key string) Source {
	for _, s := range settings {
		if s.Key == key {
			return s.Source
		}
	}
	return ""
}

func TestDefaultsWithNoFlags(t *testing.T) {
	cfg, settings, err := load(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Data != "./regmirror-data" ||
		cfg.RefPackUpstreams[0] != DefaultRefPackUpstream || cfg.HydrillaUpstreams[0] != DefaultHydrillaUpstream ||
		cfg.MetadataMaxAge != 60*time.Second || cfg.NegativeMaxAge != 30*time.Second || cfg.S3LeaseTTL != 30*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	if source(settings, "listen") != FromDefault {
		t.Errorf("listen source %q", source(settings, "listen"))
	}
}

func TestFileEnvFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "regmirror.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:9999\nmetadata-max-age: 5m\nmax-fails: 7\ndisk-cache-size: 10GiB\n"+
		"hydrilla-upstream:\n  - https://a.example/api_v2\n  - https://b.example\noffline: true\n"), 0o600)
	t.Setenv("REGMIRROR_METADATA_MAX_AGE", "90s")
	cfg, settings, err := load(t, "--config", file, "--max-fails", "9")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" || source(settings, "listen") != FromFile {
		t.Errorf("file: %s from %s", cfg.Listen, source(settings, "listen"))
	}
	if cfg.MetadataMaxAge != 90*time.Second || source(settings, "metadata-max-age") != FromEnv {
		t.Errorf("env over file: %v from %s", cfg.MetadataMaxAge, source(settings, "metadata-max-age"))
	}
	if cfg.MaxFails != 9 || source(settings, "max-fails") != FromFlag {
		t.Errorf("flag over file: %d from %s", cfg.MaxFails, source(settings, "max-fails"))
	}
	if cfg.DiskCacheSize != 10<<30 || !cfg.Offline || len(cfg.HydrillaUpstreams) != 2 {
		t.Errorf("file values: %+v", cfg)
	}
}

func TestBadValuesNameTheKey(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("listen: 127.0.0.1:1\nlisten-adress: x\n"), 0o600)
	badKeys := filepath.Join(dir, "keys")
	os.WriteFile(badKeys, []byte("ci not-a-hash ourco\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--metadata-max-age", "soon"}, "metadata-max-age"},
		{[]string{"--listen", "nowhere"}, "listen"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--refpack-upstream", "ftp://x"}, "refpack-upstream"},
		{[]string{"--disk-cache-size", "lots"}, "disk-cache-size"},
		{[]string{"--max-fails", "0"}, "max-fails"},
		{[]string{"--tls-cert", "/nonexistent.pem"}, "tls-cert"},
		{[]string{"--blob-store", "http://bucket"}, "blob-store"},
		{[]string{"--config", unknown}, "listen-adress"},
		{[]string{"--hosted-owner", "our/co"}, "hosted-owner"},
		{[]string{"--api-keys-file", badKeys}, "api-keys-file"},
		{[]string{"--api-keys-file", filepath.Join(dir, "absent")}, "api-keys-file"},
		{[]string{"--hydrilla-local", unknown}, "hydrilla-local"},
	} {
		_, _, err := load(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
