// Package s3test holds what tests of the S3 store share: finding the real S3
// server they run against, versitygw v1.8.0 (scripts/versitygw.sh installs it).
package s3test

import (
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Versitygw finds versitygw: $VERSITYGW, $(go env GOPATH)/bin, or PATH.
// Absent, the test is skipped, or fails under CI (which installs it).
func Versitygw(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		t.Fatalf("VERSITYGW=%s: no such file", p)
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	msg := "versitygw not found ($VERSITYGW, $(go env GOPATH)/bin, PATH): run scripts/versitygw.sh install"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// IsolateAWS makes the standard AWS credential chain find access/secret and
// nothing of the machine's (no profile, shared files or instance metadata).
// region "" leaves the region to the caller's flags.
func IsolateAWS(t testing.TB, access, secret, region string) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_PROFILE": "", "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
	}
}
