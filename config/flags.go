package config

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

type kind int

const (
	kString kind = iota
	kBool
	kList
	kDuration
	kSize
	kInt
	kFloat
)

// Command is a set of the commands that read configuration keys. Every key
// is serve's, and check-config checks what serve would, so both take every
// key; a key also used by sync or verify says so with alsoFor.
type Command uint8

// The commands besides serve that take keys of the table.
const (
	Sync Command = 1 << iota
	Verify
	// Serve stands for serve and check-config: every key.
	Serve Command = 1 << 7
)

// key is one setting: its flag name (also its YAML key), environment variable,
// help text, where it lives in Config, and the commands besides serve that
// use it.
type key struct {
	name   string
	kind   kind
	usage  string
	secret bool
	get    func(*Config) string
	set    func(*Config, string) error
	also   Command
}

// alsoFor returns k used by the commands cmds as well as by serve (and
// check-config), so that their --help, environment and YAML file take it.
func (k key) alsoFor(cmds ...Command) key {
	for _, c := range cmds {
		k.also |= c
	}
	return k
}

// usedBy reports whether command cmd takes k.
func (k key) usedBy(cmd Command) bool {
	return cmd == Serve || k.also&cmd != 0
}

func str(p func(*Config) *string) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return *p(c) }, func(c *Config, v string) error { *p(c) = v; return nil }
}

func list(p func(*Config) *[]string) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return strings.Join(*p(c), ",") },
		func(c *Config, v string) error {
			var out []string
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
			*p(c) = out
			return nil
		}
}

func boolean(p func(*Config) *bool) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return strconv.FormatBool(*p(c)) },
		func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			*p(c) = b
			return nil
		}
}

func duration(p func(*Config) *time.Duration) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return p(c).String() },
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%q is not a duration like 60s or 5m", v)
			}
			*p(c) = d
			return nil
		}
}

func size(p func(*Config) *int64) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return strconv.FormatInt(*p(c), 10) },
		func(c *Config, v string) error {
			n, err := humanize.ParseBytes(v)
			if err != nil || n > 1<<62 {
				return fmt.Errorf("%q is not a size like 1073741824, 512MiB or 10GB", v)
			}
			*p(c) = int64(n)
			return nil
		}
}

func integer(p func(*Config) *int) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return strconv.Itoa(*p(c)) },
		func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%q is not an integer", v)
			}
			*p(c) = n
			return nil
		}
}

func float(p func(*Config) *float64) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return strconv.FormatFloat(*p(c), 'g', -1, 64) },
		func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			*p(c) = f
			return nil
		}
}

func mk(name string, k kind, usage string, gs func() (func(*Config) string, func(*Config, string) error)) key {
	g, s := gs()
	return key{name: name, kind: k, usage: usage, get: g, set: s}
}

// keys lists every setting; flags, environment variables, YAML keys, the README
// reference and check-config all come from this one table.
var keys = []key{
	mk("listen", kString, "address to listen on", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.Listen })
	}),
	mk("data", kString, "data directory (blobs and index)", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.Data })
	}).alsoFor(Sync, Verify),
	mk("refpack-upstream", kList, "RefPack registry base URL, in order of preference (repeatable)", func() (func(*Config) string, func(*Config, string) error) {
		return list(func(c *Config) *[]string { return &c.RefPackUpstreams })
	}).alsoFor(Sync),
	mk("hydrilla-upstream", kList, "Hydrilla repository base URL, path prefix kept (repeatable)", func() (func(*Config) string, func(*Config, string) error) {
		return list(func(c *Config) *[]string { return &c.HydrillaUpstreams })
	}).alsoFor(Sync),
	mk("offline", kBool, "never contact an upstream; misses are 503", func() (func(*Config) string, func(*Config, string) error) {
		return boolean(func(c *Config) *bool { return &c.Offline })
	}),
	mk("fast-lane", kBool, "answer repeated cached hits on plain-HTTP connections ahead of net/http (false: net/http answers every request)", func() (func(*Config) string, func(*Config, string) error) {
		return boolean(func(c *Config) *bool { return &c.FastLane })
	}),
	mk("memory-cache-size", kSize, "bytes held by the memory tier (0 disables it)", func() (func(*Config) string, func(*Config, string) error) {
		return size(func(c *Config) *int64 { return &c.MemoryCacheSize })
	}),
	mk("memory-max-item", kSize, "largest body the memory tier holds", func() (func(*Config) string, func(*Config, string) error) {
		return size(func(c *Config) *int64 { return &c.MemoryMaxItem })
	}),
	mk("disk-cache-size", kSize, "bytes of blobs kept on disk, least recently used evicted first (0: no limit)", func() (func(*Config) string, func(*Config, string) error) {
		return size(func(c *Config) *int64 { return &c.DiskCacheSize })
	}),
	mk("metadata-max-age", kDuration, "how long mutable metadata is fresh", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.MetadataMaxAge })
	}),
	mk("negative-max-age", kDuration, "how long a not-found answer is cached", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.NegativeMaxAge })
	}),
	mk("stale-if-error", kDuration, "how long past its freshness a stored copy is served when upstreams fail (0: for ever)", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.StaleIfError })
	}),
	mk("sync-interval", kDuration, "run sync of both APIs in the background this often (0: never)", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.SyncInterval })
	}),
	mk("upstream-connect-timeout", kDuration, "upstream TCP/TLS connect timeout", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.UpstreamConnectTimeout })
	}).alsoFor(Sync),
	mk("upstream-header-timeout", kDuration, "time an upstream has to send response headers", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.UpstreamHeaderTimeout })
	}).alsoFor(Sync),
	mk("upstream-timeout", kDuration, "time a whole upstream fetch (body included) may take", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.UpstreamTimeout })
	}).alsoFor(Sync),
	mk("max-fails", kInt, "consecutive failures before an upstream is skipped", func() (func(*Config) string, func(*Config, string) error) {
		return integer(func(c *Config) *int { return &c.MaxFails })
	}),
	mk("fail-timeout", kDuration, "how long a failing upstream is skipped", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.FailTimeout })
	}),
	mk("upstream-max-conns", kInt, "most requests in flight per upstream; more wait up to upstream-header-timeout, then get 503 with Retry-After", func() (func(*Config) string, func(*Config, string) error) {
		return integer(func(c *Config) *int { return &c.UpstreamMaxConns })
	}),
	mk("write-idle-timeout", kDuration, "disconnect a client that accepts no byte of an answer for this long (moved by every write, so slow downloads go on)", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.WriteIdleTimeout })
	}),
	mk("upstream-ca", kString, "PEM file of extra CA certificates for upstream TLS", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.UpstreamCA })
	}).alsoFor(Sync),
	mk("tls-cert", kString, "PEM certificate file: serve HTTPS", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.TLSCert })
	}),
	mk("tls-key", kString, "PEM private key file for --tls-cert", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.TLSKey })
	}),
	mk("log-format", kString, "text or json", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.LogFormat })
	}).alsoFor(Sync, Verify),
	mk("log-level", kString, "debug, info, warn or error", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.LogLevel })
	}).alsoFor(Sync, Verify),
	mk("max-upload-size", kSize, "largest push body accepted", func() (func(*Config) string, func(*Config, string) error) {
		return size(func(c *Config) *int64 { return &c.MaxUploadSize })
	}),
	mk("max-body-size", kSize, "largest upstream body stored", func() (func(*Config) string, func(*Config, string) error) {
		return size(func(c *Config) *int64 { return &c.MaxBodySize })
	}).alsoFor(Sync),
	mk("zip-max-entries", kInt, "most entries a package zip may have", func() (func(*Config) string, func(*Config, string) error) {
		return integer(func(c *Config) *int { return &c.ZipMaxEntries })
	}).alsoFor(Sync),
	mk("zip-max-uncompressed", kSize, "most bytes a package zip may expand to", func() (func(*Config) string, func(*Config, string) error) {
		return size(func(c *Config) *int64 { return &c.ZipMaxUncompressed })
	}).alsoFor(Sync),
	mk("zip-max-ratio", kFloat, "highest compression ratio of a zip entry (zip-bomb guard)", func() (func(*Config) string, func(*Config, string) error) {
		return float(func(c *Config) *float64 { return &c.ZipMaxRatio })
	}).alsoFor(Sync),
	mk("blob-store", kString, "s3://BUCKET[/PREFIX] to share blobs between replicas (default: the local disk)", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.BlobStore })
	}).alsoFor(Sync, Verify),
	mk("s3-endpoint", kString, "S3-compatible endpoint URL", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.S3Endpoint })
	}).alsoFor(Sync, Verify),
	mk("s3-region", kString, "S3 region", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.S3Region })
	}).alsoFor(Sync, Verify),
	mk("s3-path-style", kBool, "use path-style S3 addressing", func() (func(*Config) string, func(*Config, string) error) {
		return boolean(func(c *Config) *bool { return &c.S3PathStyle })
	}).alsoFor(Sync, Verify),
	mk("hosted-owner", kList, "RefPack owner whose packages this mirror hosts itself: pushed here, never forwarded nor read upstream (repeatable)", func() (func(*Config) string, func(*Config, string) error) {
		return list(func(c *Config) *[]string { return &c.HostedOwners })
	}).alsoFor(Sync),
	mk("api-keys-file", kString, "file of keys that may push to hosted owners: NAME SHA256HEX OWNERS a line (reloaded on SIGHUP)", func() (func(*Config) string, func(*Config, string) error) {
		return str(func(c *Config) *string { return &c.APIKeysFile })
	}),
	mk("hydrilla-local", kList, "Hydrilla repository directory served as the first repository, as hydrilla-builder writes it (repeatable; reloaded on SIGHUP)", func() (func(*Config) string, func(*Config, string) error) {
		return list(func(c *Config) *[]string { return &c.HydrillaLocal })
	}).alsoFor(Sync),
	mk("s3-lease-ttl", kDuration, "lifetime of a fill lease in the bucket, renewed while the fill runs", func() (func(*Config) string, func(*Config, string) error) {
		return duration(func(c *Config) *time.Duration { return &c.S3LeaseTTL })
	}).alsoFor(Sync),
}

// EnvName is the environment variable of a key: REGMIRROR_ and the key in
// upper case with dashes as underscores.
func EnvName(name string) string {
	return "REGMIRROR_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func lookup(name string) (key, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return key{}, false
}

// FlagsFor returns the cli flags of the keys command cmd uses, plus
// --config: each command's --help lists only its own flags.
func FlagsFor(cmd Command) []cli.Flag {
	var names []string
	for _, k := range keys {
		if k.usedBy(cmd) {
			names = append(names, k.name)
		}
	}
	return Flags(names...)
}

// Flags returns the cli flags for the named keys (all keys, serve's, when
// names is empty), plus --config. Values from the YAML file are applied by
// Before.
func Flags(names ...string) []cli.Flag {
	def := Default()
	flags := []cli.Flag{&cli.StringFlag{Name: "config", Usage: "YAML config file (keys are the flag names)", EnvVars: []string{"REGMIRROR_CONFIG"}}}
	sel := keys
	if len(names) > 0 {
		sel = nil
		for _, n := range names {
			k, ok := lookup(n)
			if !ok {
				panic("config: unknown key " + n)
			}
			sel = append(sel, k)
		}
	}
	for _, k := range sel {
		env := []string{EnvName(k.name)}
		dv := k.get(&def)
		switch k.kind {
		case kBool:
			flags = append(flags, altsrc.NewBoolFlag(&cli.BoolFlag{Name: k.name, Usage: k.usage, EnvVars: env, Value: dv == "true"}))
		case kList:
			flags = append(flags, altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: k.name, Usage: k.usage + " (default: " + dv + ")", EnvVars: env}))
		default:
			flags = append(flags, altsrc.NewStringFlag(&cli.StringFlag{Name: k.name, Usage: k.usage, EnvVars: env, Value: dv}))
		}
	}
	return flags
}

// Before loads the YAML file named by --config into the flags that were not set
// on the command line or in the environment, refusing keys it does not know
// and skipping those of other commands.
func Before(flags []cli.Flag) cli.BeforeFunc {
	return func(c *cli.Context) error {
		// These commands take flags only. The CLI library stops reading flags
		// at the first other word, so a stray word would silently drop every
		// flag after it (`verify stray --data DIR` checking ./regmirror-data).
		if c.NArg() > 0 {
			return fmt.Errorf("%s: unexpected argument %q: %s takes flags only (see regmirror %s --help)",
				c.Command.Name, c.Args().First(), c.Command.Name, c.Command.Name)
		}
		// The file is read here first so that its problem reaches the user as
		// it is ("config FILE: unknown key(s) …"), not inside altsrc's wrapping.
		m, err := readFile(c.String("config"), flags)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Command.Name, err)
		}
		return altsrc.InitInputSourceWithContext(flags, func(c *cli.Context) (altsrc.InputSourceContext, error) {
			return altsrc.NewMapInputSource(c.String("config"), m), nil
		})(c)
	}
}

// readFile reads the YAML config and turns scalars into the types the flags
// expect (strings, bools, lists), so `max-fails: 3` and `max-fails: "3"` both work.
func readFile(path string, flags []cli.Flag) (map[any]any, error) {
	out := map[any]any{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, f := range flags {
		known[f.Names()[0]] = true
	}
	var unknown []string
	for name, v := range raw {
		k, ok := lookup(name)
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if !known[name] {
			// One file serves every command: a key of another command
			// (listen, read by sync) is not this command's business.
			continue
		}
		switch k.kind {
		case kBool:
			bv, ok := v.(bool)
			if !ok {
				return nil, fmt.Errorf("config %s: %s: %v is not true or false", path, name, v)
			}
			out[name] = bv
		case kList:
			switch lv := v.(type) {
			case []any:
				items := make([]any, len(lv))
				for i, it := range lv {
					items[i] = fmt.Sprint(it)
				}
				out[name] = items
			case string:
				out[name] = []any{lv}
			default:
				return nil, fmt.Errorf("config %s: %s: want a list of URLs", path, name)
			}
		default:
			if v == nil {
				continue
			}
			out[name] = fmt.Sprint(v)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("config %s: unknown key(s) %s", path, strings.Join(unknown, ", "))
	}
	return out, nil
}

// Source says where a key's effective value came from.
type Source string

// Sources of a value, in increasing precedence.
const (
	FromDefault Source = "default"
	FromFile    Source = "file"
	FromEnv     Source = "env"
	FromFlag    Source = "flag"
)

// Setting is a key's effective value and where it came from.
type Setting struct {
	Key, Env, Value string
	Source          Source
}

// FromContext builds and validates a Config from the command's flags (already
// merged with the environment and the YAML file by cli and Before). It also
// returns each key's effective value and source, secrets redacted.
func FromContext(c *cli.Context) (*Config, []Setting, error) {
	cfg := Default()
	cfg.ConfigFile = c.String("config")
	fileKeys := map[string]bool{}
	if cfg.ConfigFile != "" {
		if m, err := readFile(cfg.ConfigFile, c.Command.Flags); err == nil {
			for k := range m {
				fileKeys[fmt.Sprint(k)] = true
			}
		}
	}
	var settings []Setting
	var errs []string
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		k, ok := lookup(name)
		if !ok {
			continue
		}
		src := FromDefault
		if c.IsSet(name) {
			switch {
			case explicitFlag(name):
				src = FromFlag
			case os.Getenv(EnvName(name)) != "":
				src = FromEnv
			case fileKeys[name]:
				src = FromFile
			default:
				src = FromFlag
			}
			var v string
			if k.kind == kList {
				v = strings.Join(c.StringSlice(name), ",")
			} else if k.kind == kBool {
				v = strconv.FormatBool(c.Bool(name))
			} else {
				v = c.String(name)
			}
			if err := k.set(&cfg, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			}
		} else if k.kind != kBool && k.kind != kList {
			// A default given through cli's Value is the same as ours; parse it anyway
			// so the table and Default() can never drift apart unnoticed.
			if err := k.set(&cfg, c.String(name)); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			}
		}
		v := k.get(&cfg)
		if k.secret && v != "" {
			v = "<redacted>"
		}
		settings = append(settings, Setting{Key: name, Env: EnvName(name), Value: v, Source: src})
	}
	if len(errs) > 0 {
		return nil, settings, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	if err := cfg.Validate(); err != nil {
		return nil, settings, err
	}
	return &cfg, settings, nil
}

// CommandLine is the arguments explicitFlag reads (os.Args; tests set their own).
var CommandLine = func() []string { return os.Args }

// explicitFlag reports whether --name was given on the command line. cli does
// not keep that apart from the environment and the file, and check-config must.
func explicitFlag(name string) bool {
	args := CommandLine()
	if len(args) == 0 {
		return false
	}
	for _, a := range args[1:] {
		if a == "--" {
			return false
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// Reference is the table of every key for the README: flag, variable, default, usage.
func Reference() [][4]string {
	def := Default()
	var rows [][4]string
	for _, k := range keys {
		rows = append(rows, [4]string{"--" + k.name, EnvName(k.name), k.get(&def), k.usage})
	}
	return rows
}
