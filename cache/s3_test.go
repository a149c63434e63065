package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/cache/s3test"
	"github.com/regmirror/regmirror/cache/storetest"
)

const (
	gwAccess = "regmirror-test"
	gwSecret = "regmirror-test-secret"
)

// gateway is one versitygw on 127.0.0.1 serving a posix folder.
type gateway struct {
	t        *testing.T
	bin, dir string
	addr     string
	Endpoint string

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{} // closed when cmd has ended
}

// startGateway starts versitygw on a free port with a fresh folder; it is
// stopped when the test ends. It also points the AWS credential chain at its
// keys for the test.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	bin := s3test.Versitygw(t)
	s3test.IsolateAWS(t, gwAccess, gwSecret, "us-east-1")
	g := &gateway{t: t, bin: bin, dir: t.TempDir()}
	// The free port is found by closing a listener, so another process (the
	// tests of other packages start gateways too) may take it first: then the
	// gateway exits at once, and it is tried again on another port.
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g.addr = ln.Addr().String()
		g.Endpoint = "http://" + g.addr
		ln.Close()
		if g.start() {
			break
		}
		if attempt == 5 {
			t.Fatalf("versitygw did not stay up on any of 5 ports:\n%s", g.output())
		}
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", g.output())
		}
	})
	return g
}

// Start (re)starts the gateway on its address and folder and waits until it answers.
func (g *gateway) Start() {
	g.t.Helper()
	if !g.start() {
		g.t.Fatalf("versitygw exited at start on %s:\n%s", g.addr, g.output())
	}
}

// start starts the gateway and waits until it answers; false when it exited
// instead (its port was taken).
func (g *gateway) start() bool {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd != nil {
		g.t.Fatal("gateway already running")
	}
	out := &bytes.Buffer{}
	cmd := exec.Command(g.bin, "--access", gwAccess, "--secret", gwSecret, "--port", g.addr, "--quiet", "posix", g.dir)
	// One writer for both streams: its lock is what keeps them apart.
	w := &lockedWriter{w: out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		g.t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	g.out = out
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(g.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			// An answer may come from another process on a taken port while
			// this one is exiting: it must still be running a moment later.
			select {
			case <-exited:
				return false
			case <-time.After(200 * time.Millisecond):
			}
			g.cmd, g.exited = cmd, exited
			return true
		}
		select {
		case <-exited:
			return false
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("versitygw did not answer on %s: %v\n%s", g.addr, err, g.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the gateway (its data stays).
func (g *gateway) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Kill()
	<-g.exited
	g.cmd = nil
}

// Pause freezes the gateway (SIGSTOP): connections open, no answers.
func (g *gateway) Pause(stop bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatal(err)
	}
	if !stop {
		return
	}
	// kill(2) returns before every thread has stopped; a request sent in that
	// window would still be answered. Wait until the kernel says stopped.
	stat := fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return
		}
	}
}

func (g *gateway) output() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.out == nil {
		return ""
	}
	return g.out.String()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// client is a plain S3 client on the gateway, for setting up and inspecting.
func (g *gateway) client() *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(g.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(gwAccess, gwSecret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

var bucketSeq struct {
	sync.Mutex
	n int
}

// Bucket creates a new bucket and returns its name.
func (g *gateway) Bucket() string {
	g.t.Helper()
	bucketSeq.Lock()
	bucketSeq.n++
	name := fmt.Sprintf("regmirror-test-%d", bucketSeq.n)
	bucketSeq.Unlock()
	if _, err := g.client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		g.t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Open opens an S3 store on the gateway's bucket; opts fills in the rest.
func (g *gateway) Open(t *testing.T, bucket, prefix string, opts cache.S3Options) *cache.S3 {
	t.Helper()
	opts.Bucket, opts.Prefix, opts.Endpoint, opts.PathStyle = bucket, prefix, g.Endpoint, true
	if opts.LocalDir == "" {
		opts.LocalDir = t.TempDir()
	}
	s, err := cache.OpenS3(context.Background(), opts)
	if err != nil {
		t.Fatalf("OpenS3: %v", err)
	}
	return s
}

func TestS3Compliance(t *testing.T) {
	g := startGateway(t)
	bucket := g.Bucket()
	storetest.Run(t, storetest.Backend{Open: func(t *testing.T) (cache.Store, string) {
		// Each subtest has its own prefix in the bucket; every Open gets a
		// new, empty local tier, so a reopen reads through the bucket.
		prefix := "compliance/" + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
		s := g.Open(t, bucket, prefix, cache.S3Options{LocalBytes: 1 << 20})
		return s, s.TempDir()
	}})
}

func commit(t *testing.T, s *cache.S3, body []byte) string {
	t.Helper()
	st, err := cache.Stage(s.TempDir(), bytes.NewReader(body), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Discard()
	if err := s.Commit(context.Background(), st); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return st.Digest
}

func readAll(t *testing.T, s cache.Store, digest string) ([]byte, error) {
	t.Helper()
	b, err := s.Open(context.Background(), digest)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if _, ok := b.(*os.File); !ok {
		t.Errorf("Open returned %T, want *os.File", b)
	}
	return io.ReadAll(b)
}

// A blob stored by one replica is served to another from the bucket, then
// from its local tier.
func TestS3SharedAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	bucket := g.Bucket()
	a := g.Open(t, bucket, "fleet", cache.S3Options{})
	b := g.Open(t, bucket, "fleet", cache.S3Options{})
	body := bytes.Repeat([]byte("shared "), 5000)
	d := commit(t, a, body)
	if err := a.PutEntry(ctx, &cache.Entry{Key: "rp/zip/x@1", Digest: d, Size: int64(len(body)), Status: 200, Class: cache.Immutable}); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.LocalFiles != 1 {
		t.Fatalf("filler's local tier = %+v, want the committed blob in it", st)
	}
	e, err := b.Entry(ctx, "rp/zip/x@1")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		got, err := readAll(t, b, e.Digest)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("replica b read %d bytes, %v", len(got), err)
		}
	}
	if st := b.Stats(); st.Downloads != 1 || st.LocalHits != 1 {
		t.Fatalf("replica b stats = %+v, want 1 download then 1 local hit", st)
	}
}

// The local tier is bounded, least recently used first, and a local copy
// changed at rest is dropped and fetched again.
func TestS3LocalTier(t *testing.T) {
	g := startGateway(t)
	bucket := g.Bucket()
	local := t.TempDir()
	a := g.Open(t, bucket, "", cache.S3Options{})
	var digests []string
	for i := 0; i < 5; i++ {
		digests = append(digests, commit(t, a, bytes.Repeat([]byte{byte('a' + i)}, 1000)))
	}
	b := g.Open(t, bucket, "", cache.S3Options{LocalDir: local, LocalBytes: 2500})
	for _, d := range digests {
		if _, err := readAll(t, b, d); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.LocalBytes > 2500 || st.LocalFiles != 2 {
		t.Fatalf("local tier holds %d bytes in %d files, limit 2500", st.LocalBytes, st.LocalFiles)
	}
	last := digests[len(digests)-1]
	b.Close()
	if err := os.WriteFile(filepath.Join(local, "blobs", last), bytes.Repeat([]byte{'z'}, 1000), 0o640); err != nil {
		t.Fatal(err)
	}
	b = g.Open(t, bucket, "", cache.S3Options{LocalDir: local, LocalBytes: 2500})
	got, err := readAll(t, b, last)
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{'e'}, 1000)) {
		t.Fatalf("after tampering with the local copy: %q…, %v", got[:min(len(got), 8)], err)
	}
	if st := b.Stats(); st.Downloads != 1 {
		t.Fatalf("stats %+v: want the tampered copy downloaded again", st)
	}
}

// A blob changed in the bucket fails its digest check when downloaded.
func TestS3DetectsBlobChangedInBucket(t *testing.T) {
	g := startGateway(t)
	bucket := g.Bucket()
	a := g.Open(t, bucket, "p", cache.S3Options{})
	d := commit(t, a, []byte("original bytes"))
	// The posix backend keeps each object as a file under <dir>/<bucket>/<key>.
	p := filepath.Join(g.dir, bucket, "p", "blobs", "sha256", d)
	if err := os.WriteFile(p, []byte("tampered bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := g.Open(t, bucket, "p", cache.S3Options{})
	if _, err := b.Open(context.Background(), d); !errors.Is(err, cache.ErrDigestMismatch) {
		t.Fatalf("Open(tampered) = %v, want ErrDigestMismatch", err)
	}
}

// Verify hashes the bucket's bytes, not the local tier's copy: one byte
// changed in the bucket is found by the very replica that committed the blob
// (whose local copy is still good), and repair removes it from the bucket.
func TestS3VerifyHashesTheBucket(t *testing.T) {
	g := startGateway(t)
	bucket := g.Bucket()
	a := g.Open(t, bucket, "p", cache.S3Options{})
	ctx := context.Background()
	body := []byte("original bytes")
	d := commit(t, a, body)
	if err := a.PutEntry(ctx, &cache.Entry{Key: "k", Digest: d, Size: int64(len(body)), Status: 200}); err != nil {
		t.Fatal(err)
	}
	if problems, err := cache.Verify(ctx, a, false); err != nil || len(problems) != 0 {
		t.Fatalf("Verify before the change = %v, %v; want no problem", problems, err)
	}
	p := filepath.Join(g.dir, bucket, "p", "blobs", "sha256", d)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	problems, err := cache.Verify(ctx, a, true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, pr := range problems {
		found = found || (pr.Digest == d && strings.Contains(pr.What, "do not match"))
	}
	if !found {
		t.Fatalf("Verify after one byte changed in the bucket = %v; want %s's bytes reported", problems, d)
	}
	if _, err := g.client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("p/blobs/sha256/" + d)}); err == nil {
		t.Error("repair left the changed blob in the bucket")
	}
}

// The server checks an upload against the sha256 it is signed with, so a
// staged file changed before Commit never lands under the wrong digest.
func TestS3CommitRefusesChangedStagedFile(t *testing.T) {
	g := startGateway(t)
	a := g.Open(t, g.Bucket(), "", cache.S3Options{})
	st, err := cache.Stage(a.TempDir(), strings.NewReader("good bytes"), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Discard()
	if err := os.WriteFile(st.Path(), []byte("evil bytes"), 0o640); err != nil {
		t.Fatal(err)
	}
	err = a.Commit(context.Background(), st)
	if err == nil {
		t.Fatal("Commit of a staged file changed after hashing succeeded")
	}
	t.Log(err)
	var n int
	a.Blobs(context.Background(), func(string, int64) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d blobs in the bucket after a refused commit", n)
	}
}

// A server that ignores If-None-Match is refused at open.
func TestS3RefusesStoreWithoutConditionalWrites(t *testing.T) {
	s3test.IsolateAWS(t, gwAccess, gwSecret, "us-east-1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("ETag", `"0123"`)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	_, err := cache.OpenS3(context.Background(), cache.S3Options{
		Bucket: "b", Endpoint: srv.URL, PathStyle: true, LocalDir: t.TempDir(),
	})
	if !errors.Is(err, cache.ErrNoConditionalWrites) {
		t.Fatalf("OpenS3 on a server without conditional writes = %v, want ErrNoConditionalWrites", err)
	}
	t.Log(err)
}

// With the bucket down, blobs in the local tier are still served; requests to
// the bucket fail fast with ErrStoreUnavailable, and the store is Up again
// once the bucket returns.
func TestS3BucketDown(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	bucket := g.Bucket()
	a := g.Open(t, bucket, "", cache.S3Options{OpTimeout: 2 * time.Second})
	hot := commit(t, a, []byte("in the local tier"))
	cold := commit(t, g.Open(t, bucket, "", cache.S3Options{}), []byte("only in the bucket"))
	g.Stop()
	start := time.Now()
	if got, err := readAll(t, a, hot); err != nil || string(got) != "in the local tier" {
		t.Fatalf("local blob with the bucket down: %q, %v", got, err)
	}
	if _, err := a.Open(ctx, cold); !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Fatalf("Open(cold) with the bucket down = %v, want ErrStoreUnavailable", err)
	}
	if _, err := a.Entry(ctx, "k"); !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Fatalf("Entry with the bucket down = %v, want ErrStoreUnavailable", err)
	}
	if _, err := a.Acquire(ctx, "k"); !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Fatalf("Acquire with the bucket down = %v, want ErrStoreUnavailable", err)
	}
	if _, err := a.WaitEntry(ctx, "k", 10*time.Millisecond); !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Fatalf("WaitEntry with the bucket down = %v, want ErrStoreUnavailable", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("failing with the bucket down took %s", d)
	}
	// A fill while the bucket is down: Commit fails, but the body is served
	// from the local tier.
	st, err := cache.Stage(a.TempDir(), strings.NewReader("fetched while down"), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Discard()
	if err := a.Commit(ctx, st); !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Fatalf("Commit with the bucket down = %v, want ErrStoreUnavailable", err)
	}
	if b, err := io.ReadAll(st.Reader()); err != nil || string(b) != "fetched while down" {
		t.Fatalf("staged body after a failed Commit: %q, %v", b, err)
	}
	if got, err := readAll(t, a, st.Digest); err != nil || string(got) != "fetched while down" {
		t.Fatalf("blob committed while down: %q, %v", got, err)
	}
	if st := a.Stats(); st.Up || st.Errors == 0 {
		t.Fatalf("stats with the bucket down = %+v", st)
	}
	// Requests fail fast for a moment after an error, then one probes.
	if _, err := a.Open(ctx, cold); !errors.Is(err, cache.ErrStoreUnavailable) || time.Since(start) > 20*time.Second {
		t.Fatalf("Open with the bucket down = %v after %s", err, time.Since(start))
	}
	g.Start()
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, err := readAll(t, a, cold)
		if err == nil && string(got) == "only in the bucket" {
			break
		}
		if !errors.Is(err, cache.ErrStoreUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the bucket returned: %q, %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !a.Up() {
		t.Fatal("store still down after the bucket returned")
	}
}

// A prefix walk reads only the matching records, long keys included.
func TestS3EntriesWithPrefix(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	s := g.Open(t, g.Bucket(), "", cache.S3Options{})
	d := commit(t, s, []byte("x"))
	long := strings.Repeat("z", 300)
	keys := []string{"rp/versions/a", "rp/versions/bb", "rp/versions/" + long, "rp/zip/a@1", "hy/query/" + long, "r", "rp/v"}
	for _, k := range keys {
		if err := s.PutEntry(ctx, &cache.Entry{Key: k, Digest: d, Size: 1, Status: 200, Class: cache.Mutable}); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, want := range map[string]int{"rp/versions/": 3, "rp/v": 4, "rp/": 5, "r": 6, "": 7, "hy/query/zzz": 1, "x": 0} {
		n := 0
		if err := s.EntriesWithPrefix(ctx, prefix, func(e *cache.Entry) error {
			if !strings.HasPrefix(e.Key, prefix) {
				t.Errorf("prefix %q: got %q", prefix, e.Key)
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("EntriesWithPrefix(%q) saw %d entries, want %d", prefix, n, want)
		}
	}
}

// A bucket that hangs costs one OpTimeout, then requests fail fast until it
// answers again.
func TestS3BucketHangs(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	a := g.Open(t, g.Bucket(), "", cache.S3Options{OpTimeout: 500 * time.Millisecond})
	g.Pause(true)
	defer g.Pause(false)
	start := time.Now()
	if _, err := a.Entry(ctx, "k"); !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Fatalf("Entry on a hung bucket = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("first request on a hung bucket took %s", d)
	}
	start = time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Acquire(ctx, "k"); !errors.Is(err, cache.ErrStoreUnavailable) {
				t.Errorf("Acquire on a hung bucket = %v", err)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("20 requests after the failure took %s; want them to fail fast", d)
	}
	g.Pause(false)
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := a.Entry(ctx, "k")
		if errors.Is(err, cache.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket back, Entry = %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !a.Up() {
		t.Fatal("not up after the bucket answered")
	}
}

// A replica restarted while the bucket is unreachable still starts: it fails
// open (no leases) until a background check finds the bucket and its
// conditional writes, then takes leases again.
func TestS3StartsWhileTheBucketIsDown(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	bucket := g.Bucket()
	g.Pause(true)
	paused := true
	defer func() {
		if paused {
			g.Pause(false)
		}
	}()
	s := g.Open(t, bucket, "down-at-start", cache.S3Options{OpTimeout: 300 * time.Millisecond})
	defer s.Close()
	if _, err := s.Acquire(ctx, "k"); !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Fatalf("Acquire before the bucket was checked = %v, want ErrStoreUnavailable", err)
	}
	g.Pause(false)
	paused = false
	for deadline := time.Now().Add(20 * time.Second); ; {
		l, err := s.Acquire(ctx, "k")
		if err == nil {
			l.Release(ctx)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket back, Acquire still = %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
