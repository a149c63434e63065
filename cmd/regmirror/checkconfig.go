package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/redact"
)

// checkConfigCommand is `regmirror check-config`: like `nginx -t`, it checks
// everything serve would need before it starts, prints every key's effective
// value and source, and exits 0 when serve would start, 1 otherwise.
func checkConfigCommand() *cli.Command {
	flags := config.Flags()
	return &cli.Command{
		Name:      "check-config",
		Usage:     "check the configuration as serve would, and print every key's value and source",
		UsageText: "regmirror check-config [--config FILE] [any serve flag]...",
		Flags:     flags,
		Before:    config.Before(flags),
		Action:    checkConfig,
	}
}

func checkConfig(c *cli.Context) error {
	cfg, settings, err := config.FromContext(c)
	var problems []string
	if err != nil {
		// FromContext names the key at the start of each line.
		problems = strings.Split(err.Error(), "\n")
	} else {
		problems = checkRuntime(cfg)
	}
	invalid := map[string]bool{}
	for _, p := range problems {
		if k, _, ok := strings.Cut(p, ":"); ok {
			invalid[k] = true
		}
	}

	out := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	file := c.String("config")
	if file == "" {
		file = "(none)"
	}
	fmt.Fprintf(out, "# config file: %s\n", file)
	fmt.Fprintln(out, "KEY\tSOURCE\tVALUE")
	for _, s := range settings {
		v := s.Value
		if invalid[s.Key] && s.Source != config.FromDefault {
			// The value that was given, not the default kept in its place.
			v = c.String(s.Key)
			if sl := c.StringSlice(s.Key); len(sl) > 0 {
				v = strings.Join(sl, ",")
			}
			v += "   <- invalid"
		} else if v == "" {
			v = `""`
		}
		fmt.Fprintf(out, "%s\t%s\t%s\n", s.Key, s.Source, redact.URL(v))
	}
	out.Flush()

	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(c.App.ErrWriter, "check-config:", redact.URL(p))
		}
		n := "1 problem"
		if len(problems) > 1 {
			n = fmt.Sprintf("%d problems", len(problems))
		}
		return fmt.Errorf("check-config: %s: serve would not start", n)
	}
	fmt.Fprintln(c.App.Writer, "check-config: the configuration is valid: serve would start")
	return nil
}

// checkRuntime checks what values alone do not tell: the data directory can be
// written, the listen address is free, and the files named can be used.
func checkRuntime(cfg *config.Config) []string {
	var problems []string
	bad := func(key string, format string, a ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, a...))
	}
	if err := checkDataDir(cfg.Data); err != nil {
		bad("data", "%v", err)
	}
	if ln, err := net.Listen("tcp", cfg.Listen); err != nil {
		bad("listen", "%v", err)
	} else {
		ln.Close()
	}
	if cfg.TLSCert != "" && cfg.TLSKey != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			bad("tls-cert", "%s and tls-key %s: %v", cfg.TLSCert, cfg.TLSKey, err)
		}
	}
	if cfg.UpstreamCA != "" {
		pem, err := os.ReadFile(cfg.UpstreamCA)
		if err != nil {
			bad("upstream-ca", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			bad("upstream-ca", "%s holds no PEM certificate", cfg.UpstreamCA)
		}
	}
	return problems
}

// checkDataDir checks that serve can create and write the data directory,
// leaving nothing behind but a directory that was missing.
func checkDataDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The nearest directory that exists is where serve would create the rest.
	probeIn := abs
	for {
		fi, err := os.Stat(probeIn)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", probeIn)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		parent := filepath.Dir(probeIn)
		if parent == probeIn {
			return err
		}
		probeIn = parent
	}
	f, err := os.CreateTemp(probeIn, ".regmirror-check-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", probeIn, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("probe\n"))
	cerr := f.Close()
	os.Remove(name)
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("cannot write in %s: %w", probeIn, err)
	}
	if probeIn == abs {
		db := filepath.Join(abs, "index.db")
		if f, err := os.OpenFile(db, os.O_RDWR, 0); err == nil {
			locked := heldByAnother(f)
			f.Close()
			if locked {
				return fmt.Errorf("store index %s: locked: is another regmirror using %s?", db, dir)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store index: %w", err)
		}
	}
	return nil
}
