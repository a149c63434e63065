package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/regmirror/regmirror/cache/s3test"
)

// The fleet tests run several `regmirror serve` replicas sharing one bucket on
// a real S3 server: versitygw v1.8.0 (scripts/versitygw.sh install), posix
// backend, on 127.0.0.1. This file starts and stops it and reads the bucket
// the way another replica would.

const (
	gwAccess = "regmirror-fleet"
	gwSecret = "regmirror-fleet-secret"
	gwRegion = "us-east-1"
)

// s3gw is one versitygw serving a posix folder on 127.0.0.1. It can be stopped
// (SIGKILL) and started again on the same address and folder.
type s3gw struct {
	t        testing.TB
	bin, dir string
	addr     string
	Endpoint string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *syncBuffer
	logs []*syncBuffer // every run's output
}

// startS3GW starts versitygw on a free port with a fresh folder and points the
// AWS credential chain (of this test and of the processes it starts) at its
// keys and nothing of the machine's. The test must not be parallel.
func startS3GW(t testing.TB) *s3gw {
	t.Helper()
	bin := s3test.Versitygw(t)
	s3test.IsolateAWS(t, gwAccess, gwSecret, "")
	addr := freeAddr(t)
	g := &s3gw{t: t, bin: bin, dir: t.TempDir(), addr: addr, Endpoint: "http://" + addr}
	g.start()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			g.mu.Lock()
			defer g.mu.Unlock()
			for i, b := range g.logs {
				t.Logf("--- versitygw run %d output:\n%s", i+1, tail(b.String(), 4000))
			}
		}
	})
	return g
}

// start (re)starts the gateway and waits until it answers.
func (g *s3gw) start() {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd != nil {
		g.t.Fatal("versitygw already running")
	}
	for attempt := 0; ; attempt++ {
		out := &syncBuffer{}
		cmd := exec.Command(g.bin, "--access", gwAccess, "--secret", gwSecret, "--port", g.addr, "--quiet", "posix", g.dir)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			g.t.Fatalf("start versitygw: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		g.cmd, g.done, g.out = cmd, done, out
		g.logs = append(g.logs, out)
		err := g.waitUp(20 * time.Second)
		if err == nil {
			return
		}
		g.killLocked()
		if attempt < 20 && strings.Contains(out.String(), "address already in use") {
			time.Sleep(250 * time.Millisecond) // the old listener's port is not free yet
			continue
		}
		g.t.Fatalf("versitygw did not answer on %s: %v\n%s", g.addr, err, out)
	}
}

func (g *s3gw) waitUp(timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-g.done:
			return errors.New("versitygw exited")
		default:
		}
		resp, err := c.Get(g.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stop kills the gateway (SIGKILL: no goodbye to open connections); its
// folder stays for the next start.
func (g *s3gw) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.killLocked()
}

func (g *s3gw) killLocked() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		g.t.Errorf("versitygw (pid %d) did not die after SIGKILL", g.cmd.Process.Pid)
	}
	g.cmd = nil
}

// client is a plain S3 client on the gateway, to set up and to inspect the
// bucket as any other replica would see it.
func (g *s3gw) client() *s3.Client {
	return s3.New(s3.Options{
		Region: gwRegion, BaseEndpoint: aws.String(g.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(gwAccess, gwSecret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// createBucket creates a bucket.
func (g *s3gw) createBucket(name string) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := g.client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		g.t.Fatalf("create bucket %s: %v", name, err)
	}
}

// bucketView reads one mirror's objects in a bucket (under a prefix).
type bucketView struct {
	t      testing.TB
	c      *s3.Client
	bucket string
	prefix string // "" or ending in "/"
}

func (g *s3gw) view(bucket, prefix string) *bucketView {
	if prefix != "" {
		prefix = strings.Trim(prefix, "/") + "/"
	}
	return &bucketView{t: g.t, c: g.client(), bucket: bucket, prefix: prefix}
}

// encodeEntryKey is the mirror's object name of an entry (cache/s3.go
// encodeKey): unpadded base64url, or "~" and the sha256 of a long key.
func encodeEntryKey(key string) string {
	enc := base64.RawURLEncoding.EncodeToString([]byte(key))
	if len(enc) > 200 {
		s := sha256.Sum256([]byte(key))
		return "~" + hex.EncodeToString(s[:])
	}
	return enc
}

func isS3NotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// get reads an object; ok is false when it does not exist.
func (v *bucketView) get(key string) (body []byte, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := v.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &v.bucket, Key: aws.String(v.prefix + key)})
	if err != nil {
		if isS3NotFound(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	defer out.Body.Close()
	body, err = io.ReadAll(out.Body)
	return body, err == nil, err
}

// entry reads the entry record of a cache key.
func (v *bucketView) entry(key string) (*indexEntry, bool) {
	v.t.Helper()
	b, ok, err := v.get("entries/" + encodeEntryKey(key))
	if err != nil {
		v.t.Fatalf("read entry %q from the bucket: %v", key, err)
	}
	if !ok {
		return nil, false
	}
	e := new(indexEntry)
	if err := json.Unmarshal(b, e); err != nil {
		v.t.Fatalf("entry %q in the bucket is not JSON: %v: %q", key, err, b)
	}
	return e, true
}

// list returns the object names (below the prefix) under dir.
func (v *bucketView) list(dir string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var names []string
	p := s3.NewListObjectsV2Paginator(v.c, &s3.ListObjectsV2Input{Bucket: &v.bucket, Prefix: aws.String(v.prefix + dir)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			names = append(names, strings.TrimPrefix(aws.ToString(o.Key), v.prefix))
		}
	}
	return names, nil
}

// consistent checks what a replica may rely on: every entry record in the
// bucket names a blob that is there, whole, and hashes to its name, and every
// blob hashes to its name. It returns the problems found.
func (v *bucketView) consistent() []string {
	var problems []string
	entries, err := v.list("entries/")
	if err != nil {
		return []string{"list entries: " + err.Error()}
	}
	for _, name := range entries {
		b, ok, err := v.get(name)
		if err != nil || !ok {
			continue // deleted meanwhile, or the gateway went away: not a verdict
		}
		var e indexEntry
		if err := json.Unmarshal(b, &e); err != nil {
			problems = append(problems, fmt.Sprintf("%s: not JSON: %v", name, err))
			continue
		}
		blob, ok, err := v.get("blobs/sha256/" + e.Digest)
		switch {
		case err != nil:
			continue
		case !ok:
			problems = append(problems, fmt.Sprintf("entry %q names blob %s, which is not in the bucket", e.Key, e.Digest))
		case int64(len(blob)) != e.Size || sum(blob) != e.Digest:
			problems = append(problems, fmt.Sprintf("entry %q names blob %s (%d bytes); the bucket holds %d bytes with sha256 %s",
				e.Key, e.Digest, e.Size, len(blob), sum(blob)))
		}
	}
	blobs, err := v.list("blobs/sha256/")
	if err != nil {
		return append(problems, "list blobs: "+err.Error())
	}
	for _, name := range blobs {
		b, ok, err := v.get(name)
		if err != nil || !ok {
			continue
		}
		if d := filepath.Base(name); sum(b) != d {
			problems = append(problems, fmt.Sprintf("blob %s holds %d bytes with sha256 %s", d, len(b), sum(b)))
		}
	}
	return problems
}
