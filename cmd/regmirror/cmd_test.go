package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
)

// The commands are tested as users run them: the binary is built once and
// run with arguments, environment and files, and its output and exit status
// are checked.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds regmirror once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "regmirror-cmd-test-")
		if buildErr != nil {
			return
		}
		// Stamp the VCS revision as a release build would, whatever GOFLAGS
		// says; without a usable git, build without it.
		bin := filepath.Join(binDir, "regmirror")
		out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput()
		if err != nil && strings.Contains(string(out), "VCS") {
			out, err = exec.Command("go", "build", "-buildvcs=false", "-o", bin, ".").CombinedOutput()
		}
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "regmirror")
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs regmirror in dir with args and env (KEY=VALUE) added to an
// environment that holds no REGMIRROR_ variable of the caller's.
func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGMIRROR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run regmirror %v: %v", args, err)
	}
	return r
}

type setting struct{ source, value string }

// settings reads check-config's table: KEY SOURCE VALUE.
func settings(t *testing.T, out string) map[string]setting {
	t.Helper()
	m := map[string]setting{}
	table := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "KEY" && f[1] == "SOURCE":
			table = true
		case table && len(f) >= 2 && !strings.HasPrefix(line, "check-config:"):
			m[f[0]] = setting{source: f[1], value: strings.Join(f[2:], " ")}
		}
	}
	if len(m) == 0 {
		t.Fatalf("no settings table in:\n%s", out)
	}
	return m
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantSetting(t *testing.T, got map[string]setting, key, source, value string) {
	t.Helper()
	if s := got[key]; s.source != source || s.value != value {
		t.Errorf("%s: %s %q, want %s %q", key, s.source, s.value, source, value)
	}
}

func TestCheckConfigGoodFile(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "regmirror.yaml", `
listen: 127.0.0.1:0
data: ./store/data
max-fails: 5
memory-cache-size: 64MiB
hydrilla-upstream:
  - https://hydrilla.example/api_v2
  - https://mirror.example
offline: true
`)
	r := run(t, dir, nil, "check-config", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "serve would start") || !strings.Contains(r.stdout, "# config file: "+cfg) {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	s := settings(t, r.stdout)
	wantSetting(t, s, "listen", "file", "127.0.0.1:0")
	wantSetting(t, s, "max-fails", "file", "5")
	wantSetting(t, s, "memory-cache-size", "file", "67108864")
	wantSetting(t, s, "hydrilla-upstream", "file", "https://hydrilla.example/api_v2,https://mirror.example")
	wantSetting(t, s, "offline", "file", "true")
	wantSetting(t, s, "log-level", "default", "info")
	wantSetting(t, s, "tls-cert", "default", `""`)
	for _, row := range config.Reference() {
		if _, ok := s[strings.TrimPrefix(row[0], "--")]; !ok {
			t.Errorf("check-config does not print %s", row[0])
		}
	}
	// The check wrote nothing that stays: serve creates the data directory.
	if _, err := os.Stat(filepath.Join(dir, "store")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("check-config left %s/store behind (%v)", dir, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".regmirror-check-*")); len(left) > 0 {
		t.Errorf("probe files left: %v", left)
	}
}

func TestCheckConfigSources(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "regmirror.yaml", "listen: 127.0.0.1:0\nlog-level: warn\nlog-format: json\nmax-fails: 4\n")
	env := []string{"REGMIRROR_LOG_LEVEL=debug", "REGMIRROR_DATA=" + filepath.Join(dir, "d"), "REGMIRROR_MAX_FAILS=6"}
	r := run(t, dir, env, "check-config", "--config", cfg, "--max-fails", "7", "--fail-timeout=1m")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	s := settings(t, r.stdout)
	wantSetting(t, s, "log-format", "file", "json")           // file only
	wantSetting(t, s, "log-level", "env", "debug")            // env beats file
	wantSetting(t, s, "data", "env", filepath.Join(dir, "d")) // env only
	wantSetting(t, s, "max-fails", "flag", "7")               // flag beats env and file
	wantSetting(t, s, "fail-timeout", "flag", "1m0s")         // --key=value
	wantSetting(t, s, "metadata-max-age", "default", "1m0s")  // nothing given
	wantSetting(t, s, "listen", "file", "127.0.0.1:0")        // file
	wantSetting(t, s, "refpack-upstream", "default", config.DefaultRefPackUpstream)
}

func TestCheckConfigRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	notDir := writeFile(t, dir, "plain-file", "x")
	for _, c := range []struct {
		name string
		yaml string
		args []string
		env  []string
		want []string // each must be on stderr
	}{
		{name: "unknown key", yaml: "listen: 127.0.0.1:0\nmax-fail: 3\n", want: []string{"unknown key(s) max-fail"}},
		{name: "not an integer", yaml: "max-fails: many\n", want: []string{`max-fails: "many" is not an integer`}},
		{name: "bad duration", yaml: "metadata-max-age: soon\n", want: []string{"metadata-max-age:", "is not a duration"}},
		{name: "bad size", yaml: "disk-cache-size: lots\n", want: []string{"disk-cache-size:", "is not a size"}},
		{name: "negative", yaml: "stale-if-error: -5s\n", want: []string{"stale-if-error: must not be negative"}},
		{name: "bad enum", yaml: "log-format: xml\n", want: []string{`log-format: "xml": want text or json`}},
		{name: "bad url", yaml: "refpack-upstream: [ftp://registry.example]\n", want: []string{"refpack-upstream:", "scheme must be http or https"}},
		{name: "bad bool", yaml: "offline: maybe\n", want: []string{"offline:", "not true or false"}},
		{name: "bad env value", env: []string{"REGMIRROR_MAX_FAILS=0"}, want: []string{"max-fails: must be at least 1"}},
		{name: "bad flag value", args: []string{"--log-level", "loud"}, want: []string{"log-level:"}},
		{name: "listen busy", args: []string{"--listen", busy.Addr().String()}, want: []string{"listen:", "address already in use"}},
		{name: "data not a dir", args: []string{"--data", filepath.Join(notDir, "sub")}, want: []string{"data:", "not a directory"}},
		{name: "missing ca", args: []string{"--upstream-ca", filepath.Join(dir, "nope.pem")}, want: []string{"upstream-ca:", "no such file"}},
		{name: "ca not pem", args: []string{"--upstream-ca", notDir}, want: []string{"upstream-ca:", "holds no PEM certificate"}},
		{name: "tls not pem", args: []string{"--tls-cert", notDir, "--tls-key", notDir}, want: []string{"tls-cert:", "PEM"}},
		{name: "tls half", args: []string{"--tls-cert", notDir}, want: []string{"tls-cert: tls-cert and tls-key must be given together"}},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "absent.yaml")}, want: []string{"absent.yaml", "no such file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"check-config", "--listen", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data")}
			if c.yaml != "" {
				args = append(args, "--config", writeFile(t, t.TempDir(), "c.yaml", c.yaml))
			}
			args = append(args, c.args...)
			r := run(t, dir, c.env, args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stdout, "serve would start") {
				t.Errorf("stdout says it would start:\n%s", r.stdout)
			}
		})
	}
}

func TestCheckConfigRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	r := run(t, dir, []string{"REGMIRROR_HYDRILLA_UPSTREAM=https://t0ken-abc@hydrilla.example/api_v2"},
		"check-config", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "d"),
		"--refpack-upstream", "https://alice:s3cret-pw@registry.example", "--refpack-upstream", "https://open.example",
		"--log-level", "https://bob:hunter2@x.example")
	if r.code != 1 {
		t.Fatalf("exit %d (the log level is invalid)\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, secret := range []string{"s3cret-pw", "t0ken-abc", "hunter2"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("%q is printed:\n%s%s", secret, r.stdout, r.stderr)
		}
	}
	s := settings(t, r.stdout)
	wantSetting(t, s, "refpack-upstream", "flag", "https://alice:***@registry.example,https://open.example")
	wantSetting(t, s, "hydrilla-upstream", "env", "https://***@hydrilla.example/api_v2")
}

func TestExampleConfig(t *testing.T) {
	example, err := filepath.Abs("../../regmirror.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := yaml.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	// Every key, each with a comment right above it (or above its group).
	lines := strings.Split(string(b), "\n")
	keyLine := regexp.MustCompile(`^([a-z0-9-]+):`)
	for _, row := range config.Reference() {
		k := strings.TrimPrefix(row[0], "--")
		if _, ok := keys[k]; !ok {
			t.Errorf("regmirror.example.yaml lacks %s", k)
			continue
		}
		for i, l := range lines {
			if m := keyLine.FindStringSubmatch(l); m != nil && m[1] == k {
				j := i - 1
				for j >= 0 && keyLine.MatchString(lines[j]) {
					j--
				}
				if j < 0 || !strings.HasPrefix(lines[j], "#") {
					t.Errorf("%s has no comment above it", k)
				}
			}
		}
	}
	if len(keys) != len(config.Reference()) {
		t.Errorf("the example has %d keys, serve has %d", len(keys), len(config.Reference()))
	}

	// It loads and passes check-config. The listen address and the data
	// directory are moved so the test needs neither port 8080 nor /var/lib.
	dir := t.TempDir()
	r := run(t, dir, nil, "check-config", "--config", example, "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"))
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	s := settings(t, r.stdout)
	for k := range keys {
		want := "file"
		if k == "listen" || k == "data" {
			want = "flag"
		}
		if s[k].source != want {
			t.Errorf("%s: source %s, want %s", k, s[k].source, want)
		}
	}
	wantSetting(t, s, "memory-cache-size", "file", "268435456")
	wantSetting(t, s, "metadata-max-age", "file", "1m0s")
}

func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		shell string
		want  []string
	}{
		{"bash", []string{"complete -o bashdefault -o default -o nospace -F _regmirror_complete regmirror", "--generate-bash-completion"}},
		{"zsh", []string{"#compdef regmirror", "compdef _regmirror regmirror", "--generate-bash-completion"}},
		{"fish", []string{"complete -c regmirror", "-a 'check-config'", "-a 'completion'", "-l listen -r", "-F -l config -r"}},
	} {
		t.Run(c.shell, func(t *testing.T) {
			r := run(t, dir, nil, "completion", c.shell)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("script lacks %q:\n%s", w, r.stdout)
				}
			}
			// The shell itself reads it, when it is installed.
			if sh, err := exec.LookPath(c.shell); err == nil {
				script := writeFile(t, t.TempDir(), "completion."+c.shell, r.stdout)
				if out, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
					t.Errorf("%s -n: %v\n%s", c.shell, err, out)
				}
			}
		})
	}
	if r := run(t, dir, nil, "completion", "tcsh"); r.code != 1 || !strings.Contains(r.stderr, "want bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d, %s", r.code, r.stderr)
	}

	// What the scripts ask the binary for.
	r := run(t, dir, nil, "--generate-bash-completion")
	for _, cmd := range []string{"serve", "sync", "verify", "check-config", "completion", "version"} {
		if !regexp.MustCompile(`(?m)^` + cmd + `$`).MatchString(r.stdout) {
			t.Errorf("commands offered lack %s:\n%s", cmd, r.stdout)
		}
	}
	if r := run(t, dir, nil, "check-config", "--lis", "--generate-bash-completion"); strings.TrimSpace(r.stdout) != "--listen" {
		t.Errorf("check-config --lis completes to %q", r.stdout)
	}

	// A real bash completes with the script (without the bash-completion package).
	if bash, err := exec.LookPath("bash"); err == nil {
		script := fmt.Sprintf(`source <(%q completion bash)
for line in "regmirror check-c" "regmirror serve --log-f" "regmirror completion "; do
  read -ra COMP_WORDS <<<"$line"; [[ "$line" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _regmirror_complete; echo "${COMPREPLY[*]}"
done`, binary(t))
		cmd := exec.Command(bash, "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if got, want := string(out), "check-config\n--log-format\nbash zsh fish\n"; got != want {
			t.Errorf("bash completes to %q, want %q", got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	dir := t.TempDir()
	r := run(t, dir, nil, "version")
	if r.code != 0 || !regexp.MustCompile(`^regmirror \S+.*\n$`).MatchString(r.stdout) {
		t.Fatalf("version: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	v := strings.TrimPrefix(strings.TrimSpace(r.stdout), "regmirror ")
	if r := run(t, dir, nil, "--version"); r.code != 0 || !strings.Contains(r.stdout, v) {
		t.Errorf("--version: exit %d, %q; version says %q", r.code, r.stdout, v)
	}
	// Built from a git checkout, it names the revision.
	out, err := exec.Command("go", "version", "-m", binary(t)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^\s*build\s+vcs\.revision=([0-9a-f]{12})`).FindStringSubmatch(string(out)); m != nil {
		if !strings.Contains(v, "("+m[1]+")") {
			t.Errorf("version %q does not name the revision %s", v, m[1])
		}
	} else {
		t.Logf("the binary has no VCS revision (no git checkout?); version %q", v)
	}
}

// A mistyped --data must not be verified as a clean, new, empty store: a timer
// running verify would then hide every problem of the real one.
func TestVerifyRefusesAFolderWithNoStore(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-data")
	r := run(t, dir, nil, "verify", "--data", missing)
	if r.code != 1 || !strings.Contains(r.stderr+r.stdout, "no store in "+missing) {
		t.Fatalf("verify of a folder with no store: exit %d, %q %q; want 1 naming the folder", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("verify created %s (%v)", missing, err)
	}
}

// A config file that cannot be used is named with its problem, as check-config
// reports any other key, not inside the CLI library's wrapping.
func TestBadConfigFileIsNamedPlainly(t *testing.T) {
	dir := t.TempDir()
	bogus := writeFile(t, dir, "bogus.yaml", "bogus-key: 1\n")
	for _, cmd := range []string{"check-config", "serve"} {
		r := run(t, dir, nil, cmd, "--config", bogus)
		want := cmd + ": config " + bogus + ": unknown key(s) bogus-key"
		if r.code != 1 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "inner error") {
			t.Errorf("%s with an unknown key: exit %d, stderr %q; want 1 and %q", cmd, r.code, r.stderr, want)
		}
	}
}

// Plain verify reports and changes nothing: a blob no entry names (what a
// killed sync leaves) is reported and still there afterwards; --repair drops it.
func TestVerifyReportsWithoutRemoving(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	d, err := cache.OpenDisk(data)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	body := []byte("a blob a killed sync left behind")
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	blob := filepath.Join(data, "blobs", "sha256", digest[:2], digest)
	if err := os.MkdirAll(filepath.Dir(blob), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, body, 0o640); err != nil {
		t.Fatal(err)
	}
	r := run(t, dir, nil, "verify", "--data", data)
	// A leftover of an interrupted write is reported but is not damage: exit
	// 0, so a unit running verify before serve restarts serve after a crash.
	if r.code != 0 || !strings.Contains(r.stdout, digest) || !strings.Contains(r.stdout, "1 blob no entry names") {
		t.Fatalf("verify: exit %d, %q; want 0 naming the unnamed blob", r.code, r.stdout)
	}
	// A blob no entry names whose bytes are wrong is damage: exit 1.
	bad := filepath.Join(data, "blobs", "sha256", "ab", strings.Repeat("ab", 32))
	if err := os.MkdirAll(filepath.Dir(bad), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not these bytes"), 0o640); err != nil {
		t.Fatal(err)
	}
	if r := run(t, dir, nil, "verify", "--data", data); r.code != 1 {
		t.Fatalf("verify with a corrupt unnamed blob: exit %d, %q; want 1", r.code, r.stdout)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("verify without --repair removed the blob it reported: %v", err)
	}
	if r := run(t, dir, nil, "verify", "--data", data, "--repair"); r.code != 0 {
		t.Fatalf("verify --repair: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(blob); !os.IsNotExist(err) {
		t.Errorf("verify --repair left the unnamed blob (%v)", err)
	}
}

// A word where a command takes none is refused, naming it: the CLI library
// stops reading flags at the first argument, so `verify stray --data DIR`
// used to check ./regmirror-data instead of DIR, and `serve stray --listen
// …` to serve on the default address, both without a word.
func TestStrayArgumentsAreRefused(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--offline", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "serve-data"), "stray"},
		{"serve", "stray", "--listen", "127.0.0.1:0"},
		{"sync", "--data", filepath.Join(dir, "sync-data"), "stray"},
		{"verify", "stray", "--data", filepath.Join(dir, "verify-data")},
		{"check-config", "stray", "--listen", "127.0.0.1:0"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, binary(t), args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || timedOut ||
			!strings.Contains(string(out), `unexpected argument "stray"`) {
			t.Errorf("regmirror %s: %v (timed out: %v)\n%s\nwant exit 1 naming the unexpected argument", strings.Join(args, " "), err, timedOut, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "regmirror-data")); err == nil {
		t.Error("a command with a stray argument used the default data directory")
	}
}
