package cache

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/sync/singleflight"
)

// ErrStoreUnavailable means the bucket did not answer in time, could not be
// reached, or answered with a server error. Blobs are content-addressed, so a
// caller that gets it fails open: it fetches from the upstream anyway.
var ErrStoreUnavailable = errors.New("blob store unavailable")

// ErrNoConditionalWrites means the S3 server accepted a write that a
// conditional header (If-None-Match: *, If-Match) should have refused, so
// leases could not keep replicas from fetching the same object together.
var ErrNoConditionalWrites = errors.New("the S3 store does not enforce conditional writes")

// S3Options configure OpenS3. Credentials come from the standard AWS chain
// (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared config
// files, …), never from here.
type S3Options struct {
	Bucket string
	// Prefix is prepended to every object key ("" for the bucket's root).
	Prefix string
	// Endpoint is the URL of an S3-compatible server; "" means AWS.
	Endpoint string
	// Region defaults to the AWS chain's region, else us-east-1.
	Region string
	// PathStyle addresses the bucket as a path (http://host/bucket/key), as most
	// S3-compatible servers want.
	PathStyle bool
	// LocalDir holds the local disk tier (a read-through cache of the bucket's
	// blobs) and the staging folder (TempDir). It is required.
	LocalDir string
	// LocalBytes bounds the local tier (least recently used blobs go first);
	// 0 means no bound.
	LocalBytes int64
	// LeaseTTL is how long a lease lasts without renewal; default 30 s.
	LeaseTTL time.Duration

	// Holder names this replica in the leases it writes; default
	// hostname/pid/random.
	Holder string
	// OpTimeout bounds each small request (entry records, leases, heads); a
	// request past it counts as the store being down. Default 10 s. Blob
	// transfers are bounded only by the caller's context.
	OpTimeout time.Duration
	// Logger receives store events; default slog.Default().
	Logger *slog.Logger
}

// S3 is a Store on an S3-compatible bucket, shared by every replica:
//
//	<prefix>/blobs/sha256/<hex>   the bodies, content-addressed
//	<prefix>/entries/<enc key>    each entry as JSON (enc: unpadded base64url)
//	<prefix>/leases/<enc key>     fill leases (see Acquire)
//
// A blob is uploaded whole (a single PutObject from its staged file, signed with
// its sha256 so the server checks the bytes) and its presence is checked before
// Commit returns, so an entry record written after Commit never names a partial
// blob. Open serves from the local tier under LocalDir, downloading (and
// hashing) a blob on first use: the *os.File it returns lets net/http sendfile.
type S3 struct {
	client *s3.Client
	opts   S3Options
	prefix string // "" or ending in "/"
	log    *slog.Logger
	local  *s3Local
	dl     singleflight.Group

	up        atomic.Bool
	checked   atomic.Bool // the bucket and its conditional writes were proven; leases may be taken
	stop      chan struct{}
	stopOnce  sync.Once
	downUntil atomic.Int64 // unix nanos; see failFast
	errors    atomic.Int64
	localHits atomic.Int64
	downloads atomic.Int64

	leaseShared   atomic.Int64 // FillOnce answered by another replica's fill
	leaseFailOpen atomic.Int64 // FillOnce filled without a lease

	leases sync.Map // *Lease → struct{}: held leases, renewed until released
}

// OpenS3 connects to the bucket, checks that it exists and that the server
// enforces conditional writes, and opens the local tier.
func OpenS3(ctx context.Context, o S3Options) (*S3, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3 store: no bucket")
	}
	if o.LocalDir == "" {
		return nil, errors.New("s3 store: no local folder")
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), randomHex(4))
	}
	var loadOpts []func(*awsconfig.LoadOptions) error
	if o.Region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(o.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: aws config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	cctx, cancel := context.WithTimeout(ctx, o.OpTimeout)
	_, err = cfg.Credentials.Retrieve(cctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("s3 store: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): %w", err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		// Many S3-compatible servers reject the SDK's default trailing
		// checksums; bodies are signed with their sha256 instead (see Commit).
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		so.DisableLogOutputChecksumValidationSkipped = true
		so.Retryer = retry.NewStandard(func(ro *retry.StandardOptions) {
			ro.MaxAttempts = 3
			ro.MaxBackoff = time.Second
		})
	})
	local, err := openS3Local(o.LocalDir, o.LocalBytes)
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	s := &S3{client: client, opts: o, log: o.Logger, local: local}
	if p := strings.Trim(o.Prefix, "/"); p != "" {
		s.prefix = p + "/"
	}
	s.up.Store(true)
	s.stop = make(chan struct{})
	if err := s.checkBucket(ctx); err != nil {
		if !errors.Is(err, ErrStoreUnavailable) {
			return nil, err
		}
		// The bucket is unreachable: start anyway (a replica restarted during an
		// outage must serve what its local tier holds) and fail open until a
		// background check of the bucket and its conditional writes succeeds.
		s.log.Warn("blob store unreachable at start; serving from the local tier and the upstreams until it answers",
			"bucket", o.Bucket, "endpoint", s.endpointName(), "err", err)
		go s.checkUntilReady()
		return s, nil
	}
	s.checked.Store(true)
	return s, nil
}

// checkBucket proves the bucket exists and enforces conditional writes.
func (s *S3) checkBucket(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	_, err := s.client.HeadBucket(hctx, &s3.HeadBucketInput{Bucket: aws.String(s.opts.Bucket)})
	cancel()
	if err != nil {
		return fmt.Errorf("s3 store: bucket %q at %s: %w", s.opts.Bucket, s.endpointName(), s.classify(ctx, err))
	}
	if err := s.checkConditionalWrites(ctx); err != nil {
		return fmt.Errorf("s3 store: bucket %q at %s: %w", s.opts.Bucket, s.endpointName(), err)
	}
	return nil
}

// checkUntilReady repeats the start-up check until the bucket answers; until
// then leases are not taken (fills fail open). A bucket that answers but does
// not enforce conditional writes keeps them failing open for good.
func (s *S3) checkUntilReady() {
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(5 * time.Second):
		}
		err := s.checkBucket(context.Background())
		switch {
		case err == nil:
			s.checked.Store(true)
			s.log.Info("blob store answers; fill leases in use again", "bucket", s.opts.Bucket)
			return
		case !errors.Is(err, ErrStoreUnavailable):
			s.log.Error("blob store answers but cannot hold fill leases; every fill fails open", "err", err)
			return
		}
	}
}

func (s *S3) endpointName() string {
	if s.opts.Endpoint == "" {
		return "AWS"
	}
	return s.opts.Endpoint
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// checkConditionalWrites proves on a probe object that the server refuses a
// PUT with If-None-Match: * over an existing object and a PUT with a wrong
// If-Match, which the leases depend on.
func (s *S3) checkConditionalWrites(ctx context.Context) error {
	key := s.key("probe/" + randomHex(8))
	put := func(ifNoneMatch, ifMatch string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
		defer cancel()
		in := &s3.PutObjectInput{Bucket: &s.opts.Bucket, Key: &key, Body: strings.NewReader("probe"), ContentLength: aws.Int64(5)}
		if ifNoneMatch != "" {
			in.IfNoneMatch = aws.String(ifNoneMatch)
		}
		if ifMatch != "" {
			in.IfMatch = aws.String(ifMatch)
		}
		out, err := s.client.PutObject(ctx, in)
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}
	etag, err := put("*", "")
	if err != nil {
		return fmt.Errorf("write probe object %s: %w", key, s.classify(ctx, err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.OpTimeout)
		defer cancel()
		s.client.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: &s.opts.Bucket, Key: &key})
	}()
	if _, err := put("*", ""); err == nil {
		return fmt.Errorf("%w: a PUT with If-None-Match: * replaced an existing object (versitygw needs v1.8.0 or later)", ErrNoConditionalWrites)
	} else if !isPreconditionFailed(err) {
		return fmt.Errorf("probe If-None-Match: %w", s.classify(ctx, err))
	}
	if _, err := put("", `"00000000000000000000000000000000"`); err == nil {
		return fmt.Errorf("%w: a PUT with a wrong If-Match replaced an existing object", ErrNoConditionalWrites)
	} else if !isPreconditionFailed(err) {
		return fmt.Errorf("probe If-Match: %w", s.classify(ctx, err))
	}
	if _, err := put("", etag); err != nil {
		return fmt.Errorf("%w: a PUT with the object's own ETag in If-Match failed: %v", ErrNoConditionalWrites, err)
	}
	return nil
}

// key joins the prefix to a path inside it.
func (s *S3) key(p string) string { return s.prefix + p }

func (s *S3) blobKey(digest string) string { return s.key("blobs/sha256/" + digest) }

// maxEncodedKey keeps an encoded key one file name long on file-backed S3
// servers (versitygw's posix backend maps each name to a file: 255 bytes).
const maxEncodedKey = 200

// encodeKey makes a cache key safe as one segment of an object key: unpadded
// base64url, or for a long key "~" and its sha256 (the entry's JSON still holds
// the key).
func encodeKey(key string) string {
	enc := base64.RawURLEncoding.EncodeToString([]byte(key))
	if len(enc) > maxEncodedKey {
		return "~" + sha256Hex([]byte(key))
	}
	return enc
}

func (s *S3) entryKey(key string) string { return s.key("entries/" + encodeKey(key)) }

// TempDir is the staging folder: on the local tier's filesystem, so a
// committed body moves into the local tier by a rename.
func (s *S3) TempDir() string { return s.local.tmpDir() }

// Holder is the name this replica writes into its leases.
func (s *S3) Holder() string { return s.opts.Holder }

// LeaseTTL is the lease lifetime without renewal.
func (s *S3) LeaseTTL() time.Duration { return s.opts.LeaseTTL }

// S3Stats are the figures for the metrics and the status page.
type S3Stats struct {
	Up         bool  // the last request reached the bucket
	Errors     int64 // requests that failed because the bucket was unreachable, slow or failing
	LocalBytes int64 // size of the local tier
	LocalFiles int64
	LocalHits  int64 // opens served from the local tier
	Downloads  int64 // blobs downloaded from the bucket into the local tier
	// FillShared counts FillOnce calls answered by an entry another replica
	// stored; FillFailOpen those that fetched without a lease (store slow or
	// down, or the lease changing hands too often).
	FillShared, FillFailOpen int64
}

// Stats reports the store's health and local tier.
func (s *S3) Stats() S3Stats {
	b, n := s.local.usage()
	return S3Stats{Up: s.up.Load(), Errors: s.errors.Load(), LocalBytes: b, LocalFiles: n,
		LocalHits: s.localHits.Load(), Downloads: s.downloads.Load(),
		FillShared: s.leaseShared.Load(), FillFailOpen: s.leaseFailOpen.Load()}
}

// Shared implements SharedStore: every replica writes the bucket.
func (s *S3) Shared() bool { return true }

// Up reports whether the last request reached the bucket.
func (s *S3) Up() bool { return s.up.Load() }

func statusOf(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func isPreconditionFailed(err error) bool {
	return statusOf(err) == 412 || errorCode(err) == "PreconditionFailed"
}

// isConflict is AWS's answer to two conditional writes racing on one key.
func isConflict(err error) bool {
	return statusOf(err) == 409 || errorCode(err) == "ConditionalRequestConflict"
}

func isNoSuchKey(err error) bool {
	switch errorCode(err) {
	case "NoSuchBucket":
		return false
	case "NoSuchKey", "NotFound":
		return true
	}
	return statusOf(err) == 404
}

// classify maps an SDK error: a missing object wraps ErrNotFound; no answer,
// a timeout or a 5xx wraps ErrStoreUnavailable (and marks the store down);
// the caller's own cancellation is returned as it is.
func (s *S3) classify(ctx context.Context, err error) error {
	if err == nil {
		s.markUp()
		return nil
	}
	if ctx.Err() != nil || errors.Is(err, ErrStoreUnavailable) || errors.Is(err, ErrNotFound) {
		return err
	}
	st := statusOf(err)
	switch {
	case isNoSuchKey(err):
		s.markUp()
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case st == 0 || st >= 500:
		return s.markDown(err)
	}
	s.markUp()
	return err
}

// breakerCooldown is how long requests fail at once after the bucket failed
// one; then a single request probes it.
const breakerCooldown = time.Second

func (s *S3) markUp() {
	s.up.Store(true)
	s.downUntil.Store(0)
}

// markDown records a failure to reach the bucket and returns it wrapping
// ErrStoreUnavailable.
func (s *S3) markDown(err error) error {
	s.errors.Add(1)
	s.downUntil.Store(time.Now().Add(breakerCooldown).UnixNano())
	if s.up.Swap(false) {
		s.log.Warn("blob store unreachable; failing open", "bucket", s.opts.Bucket, "endpoint", s.endpointName(), "err", err)
	}
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}

// failFast is the circuit breaker: while the bucket is down, requests fail at
// once instead of each waiting for a timeout, except one probe per cooldown.
func (s *S3) failFast() error {
	until := s.downUntil.Load()
	if until == 0 {
		return nil
	}
	now := time.Now()
	if now.UnixNano() >= until && s.downUntil.CompareAndSwap(until, now.Add(s.opts.OpTimeout).UnixNano()) {
		return nil // this request probes; the others wait for its answer
	}
	return fmt.Errorf("%w: failing fast after errors", ErrStoreUnavailable)
}

// op runs a small request under OpTimeout and classifies its error.
func (s *S3) op(ctx context.Context, f func(context.Context) error) error {
	if err := s.failFast(); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	err := f(octx)
	if err != nil && ctx.Err() == nil && octx.Err() != nil {
		return s.markDown(fmt.Errorf("no answer in %s: %v", s.opts.OpTimeout, err))
	}
	return s.classify(ctx, err)
}

// Entry implements Store. The record read is also kept in the local tier:
// while the bucket is unreachable, a record whose blob the local tier holds
// is answered from there (fail open: this replica keeps serving what it has).
func (s *S3) Entry(ctx context.Context, key string) (*Entry, error) {
	e, rec, err := s.readEntry(ctx, key, s.entryKey(key))
	switch {
	case err == nil:
		s.local.putEntry(key, rec)
	case errors.Is(err, ErrNotFound):
		s.local.dropEntry(key)
	case errors.Is(err, ErrStoreUnavailable):
		if rec, ok := s.local.entry(key); ok {
			le := new(Entry)
			if json.Unmarshal(rec, le) == nil && le.Key == key && (le.Digest == "" || s.local.has(le.Digest)) {
				return le, nil
			}
		}
	}
	return e, err
}

// entryAt reads the entry record at an object key.
func (s *S3) entryAt(ctx context.Context, key, objKey string) (*Entry, error) {
	e, _, err := s.readEntry(ctx, key, objKey)
	return e, err
}

// readEntry reads the entry record at an object key and returns its JSON too.
func (s *S3) readEntry(ctx context.Context, key, objKey string) (*Entry, []byte, error) {
	var body []byte
	err := s.op(ctx, func(ctx context.Context) error {
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.opts.Bucket, Key: &objKey})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		body, err = io.ReadAll(io.LimitReader(out.Body, 16<<20))
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("entry %q: %w", key, err)
	}
	e := new(Entry)
	if err := json.Unmarshal(body, e); err != nil {
		return nil, nil, fmt.Errorf("entry %q: %w", key, err)
	}
	return e, body, nil
}

// PutEntry implements Store.
func (s *S3) PutEntry(ctx context.Context, e *Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	err = s.op(ctx, func(ctx context.Context) error {
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.opts.Bucket, Key: aws.String(s.entryKey(e.Key)),
			Body: strings.NewReader(string(v)), ContentLength: aws.Int64(int64(len(v))),
			ContentType: aws.String("application/json"),
		}, withPayloadHash(v))
		return err
	})
	if err != nil {
		return fmt.Errorf("put entry %q: %w", e.Key, err)
	}
	s.local.putEntry(e.Key, v)
	return nil
}

// DeleteEntry implements Store.
func (s *S3) DeleteEntry(ctx context.Context, key string) error {
	err := s.op(ctx, func(ctx context.Context) error {
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.opts.Bucket, Key: aws.String(s.entryKey(key))})
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete entry %q: %w", key, err)
	}
	s.local.dropEntry(key)
	return nil
}

// list calls fn for every object in the folder dir (inside the prefix) whose
// name starts with namePrefix.
func (s *S3) list(ctx context.Context, dir, namePrefix string, fn func(name string, size int64) error) error {
	full := s.key(dir)
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.opts.Bucket, Prefix: aws.String(full + namePrefix)})
	for p.HasMorePages() {
		var page *s3.ListObjectsV2Output
		err := s.op(ctx, func(ctx context.Context) error {
			var err error
			page, err = p.NextPage(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", full, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), full)
			if name == "" || strings.Contains(name, "/") {
				continue
			}
			if err := fn(name, aws.ToInt64(o.Size)); err != nil {
				return err
			}
		}
	}
	return nil
}

// entriesParallel is how many entry records Entries reads at once.
const entriesParallel = 16

// Entries implements Store. The records are read in parallel; fn is called
// from one goroutine at a time. An entry deleted during the walk is skipped.
func (s *S3) Entries(ctx context.Context, fn func(*Entry) error) error {
	return s.walkEntries(ctx, "", fn)
}

// EntriesWithPrefix implements PrefixWalker: it reads only the records whose
// encoded name shares the encoding of the prefix's first whole 3-byte groups,
// plus those of long keys (stored under hashed names).
func (s *S3) EntriesWithPrefix(ctx context.Context, prefix string, fn func(*Entry) error) error {
	n := len(prefix) / 3 * 3
	filter := func(e *Entry) error {
		if strings.HasPrefix(e.Key, prefix) {
			return fn(e)
		}
		return nil
	}
	if n == 0 {
		return s.walkEntries(ctx, "", filter)
	}
	if err := s.walkEntries(ctx, base64.RawURLEncoding.EncodeToString([]byte(prefix[:n])), filter); err != nil {
		return err
	}
	return s.walkEntries(ctx, "~", filter)
}

// walkEntries reads the entry records whose names start with namePrefix.
func (s *S3) walkEntries(ctx context.Context, namePrefix string, fn func(*Entry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keys := make(chan string) // object keys
	type result struct {
		e   *Entry
		err error
	}
	results := make(chan result)
	var wg sync.WaitGroup
	for range entriesParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				e, err := s.entryAt(ctx, k, k)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				select {
				case results <- result{e, err}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	listErr := make(chan error, 1)
	go func() {
		defer close(keys)
		listErr <- s.list(ctx, "entries/", namePrefix, func(name string, _ int64) error {
			select {
			case keys <- s.key("entries/" + name):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	go func() { wg.Wait(); close(results) }()
	var firstErr error
	for r := range results {
		if firstErr != nil {
			continue
		}
		err := r.err
		if err == nil {
			err = fn(r.e)
		}
		if err != nil {
			firstErr = err
			cancel()
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if err := <-listErr; err != nil {
		return err
	}
	return nil
}

// withPayloadHash signs a request body with a sha256 already known, so the SDK
// does not read the body to hash it and the server checks the bytes against
// it (x-amz-content-sha256).
func withPayloadHash(body []byte) func(*s3.Options) {
	return withPayloadDigest(sha256Hex(body))
}

func withPayloadDigest(hexDigest string) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("regmirrorPayloadHash",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					return next.HandleFinalize(v4.SetPayloadHash(ctx, hexDigest), in)
				}), (*v4.ComputePayloadSHA256)(nil).ID(), middleware.Before)
		})
	}
}

// Commit implements Store: one PutObject of the staged file (If-None-Match: *,
// so a blob already there is not rewritten), then a HEAD to check that the
// whole blob is there. The staged file is then linked into the local tier.
//
// When the bucket is unavailable Commit fails wrapping ErrStoreUnavailable, but
// the staged file is also linked into the local tier (hashed again on first
// use), so this replica can serve what it fetched: Open finds it there. The
// staged body stays readable until Discard.
func (s *S3) Commit(ctx context.Context, st *Staged) (err error) {
	if st.file == nil {
		return errors.New("commit: staged body already discarded")
	}
	if !validDigest(st.Digest) {
		return fmt.Errorf("commit: %q is not a sha256 digest", st.Digest)
	}
	defer func() {
		if errors.Is(err, ErrStoreUnavailable) && st.file != nil {
			// A link, not a move: the caller may still read the staged body.
			s.local.link(st.file.Name(), st.Digest, st.Size, false)
		}
	}()
	key := s.blobKey(st.Digest)
	size, err := s.headSize(ctx, key)
	switch {
	case err == nil && size == st.Size:
		s.adoptStaged(st)
		return nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return fmt.Errorf("commit %s: %w", st.Digest, err)
	}
	in := &s3.PutObjectInput{
		Bucket: &s.opts.Bucket, Key: &key,
		Body: io.NewSectionReader(st.file, 0, st.Size), ContentLength: aws.Int64(st.Size),
		ContentType: aws.String("application/octet-stream"),
		Metadata:    map[string]string{"sha256": st.Digest},
	}
	if err == nil {
		// A blob of the wrong size sits under this digest: replace it.
		s.log.Warn("blob in the bucket has the wrong size; replacing it", "digest", st.Digest, "size", size, "want", st.Size)
	} else {
		in.IfNoneMatch = aws.String("*")
	}
	_, err = s.client.PutObject(ctx, in, withPayloadDigest(st.Digest))
	if err != nil && !isPreconditionFailed(err) && !isConflict(err) {
		return fmt.Errorf("commit %s: %w", st.Digest, s.classify(ctx, err))
	}
	s.classify(ctx, nil)
	// Whoever wrote it, the whole blob must be there now.
	size, err = s.headSize(ctx, key)
	if err != nil {
		return fmt.Errorf("commit %s: check upload: %w", st.Digest, err)
	}
	if size != st.Size {
		return fmt.Errorf("commit %s: the bucket holds %d bytes, want %d", st.Digest, size, st.Size)
	}
	s.adoptStaged(st)
	return nil
}

func (s *S3) headSize(ctx context.Context, key string) (int64, error) {
	var size int64
	err := s.op(ctx, func(ctx context.Context) error {
		out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.opts.Bucket, Key: &key})
		if err != nil {
			return err
		}
		size = aws.ToInt64(out.ContentLength)
		return nil
	})
	return size, err
}

// adoptStaged links a committed staged file into the local tier, so the
// replica that filled a blob serves it without downloading it back. The staged
// name stays readable until the caller discards it.
func (s *S3) adoptStaged(st *Staged) {
	s.local.link(st.file.Name(), st.Digest, st.Size, true)
}

// Open implements Store: from the local tier, else downloaded from the bucket
// into it (hashed on the way; a blob that does not match its digest is
// ErrDigestMismatch).
func (s *S3) Open(ctx context.Context, digest string) (Blob, error) {
	if !validDigest(digest) {
		return nil, fmt.Errorf("blob %q: not a sha256 digest: %w", digest, ErrNotFound)
	}
	for attempt := 0; ; attempt++ {
		f, err := s.local.open(digest)
		if err == nil {
			if attempt == 0 {
				s.localHits.Add(1)
			}
			return f, nil
		}
		if !errors.Is(err, ErrNotFound) {
			s.log.Warn("local tier", "digest", digest, "err", err)
		}
		if attempt == 3 {
			return nil, fmt.Errorf("blob %s: evicted from the local tier as soon as downloaded (local tier too small?)", digest)
		}
		_, err, _ = s.dl.Do(digest, func() (any, error) { return nil, s.download(ctx, digest) })
		if err != nil {
			if ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				continue // another caller's download was cancelled; try our own
			}
			return nil, fmt.Errorf("blob %s: %w", digest, err)
		}
	}
}

// OpenSource implements SourceStore: the blob's bytes as the bucket holds
// them, streamed past the local tier (which neither serves nor keeps them),
// so that verify hashes what every replica would download.
func (s *S3) OpenSource(ctx context.Context, digest string) (io.ReadCloser, error) {
	if !validDigest(digest) {
		return nil, fmt.Errorf("blob %q: not a sha256 digest: %w", digest, ErrNotFound)
	}
	if err := s.failFast(); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.opts.Bucket, Key: aws.String(s.blobKey(digest))})
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, s.classify(ctx, err))
	}
	s.classify(ctx, nil)
	return out.Body, nil
}

func (s *S3) download(ctx context.Context, digest string) error {
	if err := s.failFast(); err != nil {
		return err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.opts.Bucket, Key: aws.String(s.blobKey(digest))})
	if err != nil {
		return s.classify(ctx, err)
	}
	defer out.Body.Close()
	n, err := s.local.fill(digest, out.Body)
	if err != nil {
		if errors.Is(err, ErrDigestMismatch) || ctx.Err() != nil {
			return err
		}
		if errors.Is(err, errLocalWrite) {
			return err
		}
		return s.classify(ctx, err) // cut off mid-body
	}
	s.classify(ctx, nil)
	s.downloads.Add(1)
	s.log.Debug("blob downloaded into the local tier", "digest", digest, "size", n)
	return nil
}

// DeleteBlob implements Store. It removes the blob from the bucket, which every
// replica shares: only call it for a blob no entry in the bucket names.
func (s *S3) DeleteBlob(ctx context.Context, digest string) error {
	if !validDigest(digest) {
		return fmt.Errorf("blob %q: not a sha256 digest: %w", digest, ErrNotFound)
	}
	s.local.remove(digest)
	err := s.op(ctx, func(ctx context.Context) error {
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.opts.Bucket, Key: aws.String(s.blobKey(digest))})
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return nil
}

// Blobs implements Store: the blobs in the bucket.
func (s *S3) Blobs(ctx context.Context, fn func(string, int64) error) error {
	return s.list(ctx, "blobs/sha256/", "", func(name string, size int64) error {
		if !validDigest(name) {
			return nil
		}
		return fn(name, size)
	})
}

// Close implements Store. It stops renewing the leases still held (they
// lapse after their TTL, as a crashed replica's would); the local tier stays on
// disk for the next start.
func (s *S3) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.leases.Range(func(k, _ any) bool {
		k.(*Lease).stopRenewing()
		return true
	})
	return nil
}
