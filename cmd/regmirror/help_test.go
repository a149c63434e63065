package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
)

// flagLine is an option line of cli's --help: the flag's long name first.
var flagLine = regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)`)

// Each command's --help lists exactly the flags it uses (design.md, Command
// line): serve and check-config every key, sync and verify their own.
func TestHelpListsEachCommandsOwnFlags(t *testing.T) {
	every := []string{"config", "help"}
	for _, row := range config.Reference() {
		every = append(every, strings.TrimPrefix(row[0], "--"))
	}
	blobStore := []string{"blob-store", "s3-endpoint", "s3-region", "s3-path-style"}
	want := map[string][]string{
		"serve":        every,
		"check-config": every,
		"sync": append([]string{
			"config", "help", "data", "refpack-upstream", "hydrilla-upstream",
			"upstream-connect-timeout", "upstream-header-timeout", "upstream-timeout", "upstream-ca",
			"log-format", "log-level", "max-body-size", "zip-max-entries", "zip-max-uncompressed", "zip-max-ratio",
			"s3-lease-ttl", "all-versions", "package", "owner", "jobs",
			"hosted-owner", "hydrilla-local", // what sync must never fetch upstream
		}, blobStore...),
		"verify": append([]string{"config", "help", "data", "log-format", "log-level", "repair"}, blobStore...),
	}
	dir := t.TempDir()
	for cmd, w := range want {
		t.Run(cmd, func(t *testing.T) {
			r := run(t, dir, nil, cmd, "--help")
			if r.code != 0 {
				t.Fatalf("%s --help: exit %d\n%s%s", cmd, r.code, r.stdout, r.stderr)
			}
			var got []string
			for _, m := range flagLine.FindAllStringSubmatch(r.stdout, -1) {
				got = append(got, m[1])
			}
			slices.Sort(got)
			w = slices.Clone(w)
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Errorf("%s --help lists\n\t%v\nwant\n\t%v\n%s", cmd, got, w, r.stdout)
			}
		})
	}
}

// One config file serves every command: sync and verify skip the keys that
// are serve's only, and still refuse keys nobody knows.
func TestConfigFileSharedByCommands(t *testing.T) {
	dir := t.TempDir()
	shared := writeFile(t, dir, "shared.yaml", "listen: 127.0.0.1:9\nfast-lane: true\ndata: "+dir+"/data\n")
	// verify wants a store to check: make an empty one.
	d, err := cache.OpenDisk(dir + "/data")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if r := run(t, dir, nil, "verify", "--config", shared); r.code != 0 {
		t.Errorf("verify with serve keys in its file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bogus := writeFile(t, dir, "bogus.yaml", "bogus-key: 1\n")
	if r := run(t, dir, nil, "verify", "--config", bogus); r.code == 0 || !strings.Contains(r.stderr, "bogus-key") {
		t.Errorf("verify with an unknown key: exit %d, stderr %q; want it refused by name", r.code, r.stderr)
	}
}
