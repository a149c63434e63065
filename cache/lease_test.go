package cache_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/regmirror/regmirror/cache"
)

// replicas opens n stores on one bucket, as n replicas would.
func replicas(t *testing.T, g *gateway, n int, ttl time.Duration) []*cache.S3 {
	t.Helper()
	bucket := g.Bucket()
	var rs []*cache.S3
	for i := 0; i < n; i++ {
		s := g.Open(t, bucket, "fleet", cache.S3Options{LeaseTTL: ttl, Holder: string(rune('a' + i))})
		t.Cleanup(func() { s.Close() })
		rs = append(rs, s)
	}
	return rs
}

// Concurrent acquirers on several replicas: exactly one wins, the others are
// told the lease is held.
func TestLeaseOneWinner(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	rs := replicas(t, g, 3, 30*time.Second)
	for round := 0; round < 5; round++ {
		key := "rp/zip/owner/pkg@1.0." + string(rune('0'+round))
		var wins, held atomic.Int32
		var winner *cache.Lease
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 12; i++ {
			wg.Add(1)
			go func(s *cache.S3) {
				defer wg.Done()
				<-start
				l, err := s.Acquire(ctx, key)
				switch {
				case err == nil:
					wins.Add(1)
					mu.Lock()
					winner = l
					mu.Unlock()
				case errors.Is(err, cache.ErrLeaseHeld):
					held.Add(1)
				default:
					t.Errorf("Acquire: %v", err)
				}
			}(rs[i%len(rs)])
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || held.Load() != 11 {
			t.Fatalf("round %d: %d won, %d told held; want 1 and 11", round, wins.Load(), held.Load())
		}
		if err := winner.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// Release deletes the lease: the next acquirer gets it at once, and a waiter
// learns that it is free.
func TestLeaseReleaseDeletes(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	rs := replicas(t, g, 2, 30*time.Second)
	l, err := rs[0].Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := rs[1].WaitEntry(ctx, "k", 10*time.Millisecond); !errors.Is(err, cache.ErrLeaseFree) {
		t.Fatalf("WaitEntry after a release without an entry = %v, want ErrLeaseFree", err)
	}
	l2, err := rs[1].Acquire(ctx, "k")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release(ctx)
}

// A lease left by a crashed replica is taken over once expired; the crashed
// holder's late Release leaves the new holder's lease alone.
func TestLeaseExpiredIsTakenOver(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	ttl := 1500 * time.Millisecond
	rs := replicas(t, g, 3, ttl)
	crashed, err := rs[0].Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	rs[0].Close() // stops renewing, as a killed replica would
	if _, err := rs[1].Acquire(ctx, "k"); !errors.Is(err, cache.ErrLeaseHeld) {
		t.Fatalf("Acquire of a live lease = %v, want ErrLeaseHeld", err)
	}
	// A waiter sees it expire.
	wctx, cancel := context.WithTimeout(ctx, 10*ttl)
	defer cancel()
	if _, err := rs[2].WaitEntry(wctx, "k", 20*time.Millisecond); !errors.Is(err, cache.ErrLeaseFree) {
		t.Fatalf("WaitEntry on an expired lease = %v, want ErrLeaseFree", err)
	}
	if time.Now().Before(crashed.Expires()) {
		t.Fatal("WaitEntry reported the lease free before it expired")
	}
	took, err := rs[1].Acquire(ctx, "k")
	if err != nil {
		t.Fatalf("Acquire of an expired lease: %v", err)
	}
	defer took.Release(ctx)
	if err := crashed.Release(ctx); err != nil {
		t.Fatalf("late Release by the old holder: %v", err)
	}
	if _, err := rs[2].Acquire(ctx, "k"); !errors.Is(err, cache.ErrLeaseHeld) {
		t.Fatalf("after the old holder's late Release, Acquire = %v, want ErrLeaseHeld (its conditional DELETE must not remove the new lease)", err)
	}
}

// An expired lease written by another process (any body) is taken over.
func TestLeaseTakeOverForeignRecord(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	bucket := g.Bucket()
	s := g.Open(t, bucket, "", cache.S3Options{})
	body := `{"key":"k","holder":"gone","expires":"2020-01-01T00:00:00Z"}`
	if _, err := g.client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("leases/" + encodedKey("k")), Body: strings.NewReader(body),
	}); err != nil {
		t.Fatal(err)
	}
	l, err := s.Acquire(ctx, "k")
	if err != nil {
		t.Fatalf("Acquire over an expired lease: %v", err)
	}
	l.Release(ctx)
}

// Renewal keeps a long fill's lease past its TTL; others are refused all along.
func TestLeaseRenewalOutlivesTTL(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	ttl := 1500 * time.Millisecond
	rs := replicas(t, g, 2, ttl)
	l, err := rs[0].Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	first := l.Expires()
	deadline := time.Now().Add(3 * ttl)
	for time.Now().Before(deadline) {
		if _, err := rs[1].Acquire(ctx, "k"); !errors.Is(err, cache.ErrLeaseHeld) {
			t.Fatalf("Acquire during a renewed lease = %v, want ErrLeaseHeld", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-l.Lost():
		t.Fatal("lease lost while renewed")
	default:
	}
	if !l.Expires().After(first.Add(ttl)) {
		t.Fatalf("lease expiry %s was not pushed on from %s", l.Expires(), first)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := rs[1].Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	l2.Release(ctx)
}

// The holder fills (blob, then entry record) while another replica waits for
// the record: one fill for two replicas.
func TestLeaseWaiterGetsHoldersEntry(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	rs := replicas(t, g, 2, 5*time.Second)
	holder, err := rs[0].Acquire(ctx, "rp/meta/x@1")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"x","version":"1"}`)
	go func() {
		time.Sleep(300 * time.Millisecond) // the upstream is slow
		st, err := cache.Stage(rs[0].TempDir(), bytes.NewReader(body), 0, "")
		if err != nil {
			t.Error(err)
			return
		}
		defer st.Discard()
		if err := rs[0].Commit(ctx, st); err != nil {
			t.Error(err)
		}
		if err := rs[0].PutEntry(ctx, &cache.Entry{Key: "rp/meta/x@1", Digest: st.Digest, Size: st.Size, Status: 200, Class: cache.Mutable, FetchedAt: time.Now()}); err != nil {
			t.Error(err)
		}
		holder.Release(ctx)
	}()
	if _, err := rs[1].Acquire(ctx, "rp/meta/x@1"); !errors.Is(err, cache.ErrLeaseHeld) {
		t.Fatalf("second replica's Acquire = %v, want ErrLeaseHeld", err)
	}
	start := time.Now()
	e, err := rs[1].WaitEntry(ctx, "rp/meta/x@1", 20*time.Millisecond)
	if err != nil {
		t.Fatalf("WaitEntry: %v", err)
	}
	got, err := readAll(t, rs[1], e.Digest)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("waiter read %q, %v", got, err)
	}
	t.Logf("waited %s for a 300 ms fill", time.Since(start).Round(time.Millisecond))
}

// encodedKey is the object name the store gives a cache key.
func encodedKey(k string) string { return base64.RawURLEncoding.EncodeToString([]byte(k)) }

// Concurrent misses on three replicas make one fill; everyone gets its entry.
func TestFillOnceAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	rs := replicas(t, g, 3, 5*time.Second)
	key := "hy/query/http://127.0.0.1:1/api?url=" + strings.Repeat("https%3A%2F%2Fexample.org%2Fa", 20) // long: hashed name
	body := []byte("one upstream answer")
	var fills atomic.Int32
	fill := func(s *cache.S3) func(context.Context) error {
		return func(ctx context.Context) error {
			fills.Add(1)
			time.Sleep(300 * time.Millisecond) // a slow upstream
			st, err := cache.Stage(s.TempDir(), bytes.NewReader(body), 0, "")
			if err != nil {
				return err
			}
			defer st.Discard()
			if err := s.Commit(ctx, st); err != nil {
				return err
			}
			return s.PutEntry(ctx, &cache.Entry{Key: key, Digest: st.Digest, Size: st.Size, Status: 200, Class: cache.Mutable, FetchedAt: time.Now()})
		}
	}
	fresh := func(e *cache.Entry) bool { return time.Since(e.FetchedAt) < time.Minute }
	var wg sync.WaitGroup
	var shared atomic.Int32
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(s *cache.S3) {
			defer wg.Done()
			e, filled, err := s.FillOnce(ctx, key, 20*time.Millisecond, fresh, fill(s))
			if err != nil {
				t.Errorf("FillOnce: %v", err)
				return
			}
			if filled {
				return
			}
			shared.Add(1)
			if got, err := readAll(t, s, e.Digest); err != nil || !bytes.Equal(got, body) {
				t.Errorf("read shared entry: %q, %v", got, err)
			}
		}(rs[i%3])
	}
	wg.Wait()
	if fills.Load() != 1 || shared.Load() != 29 {
		t.Fatalf("%d fills, %d answered by them; want 1 and 29", fills.Load(), shared.Load())
	}
	var keys []string
	rs[0].Entries(ctx, func(e *cache.Entry) error { keys = append(keys, e.Key); return nil })
	if len(keys) != 1 || keys[0] != key {
		t.Fatalf("Entries = %q", keys)
	}
}

// A holder that dies mid-fill: a waiter takes the lease over after its TTL and fills.
func TestFillOnceAfterHolderDies(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	ttl := time.Second
	rs := replicas(t, g, 2, ttl)
	if _, err := rs[0].Acquire(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	rs[0].Close() // killed mid-fill
	start := time.Now()
	_, filled, err := rs[1].FillOnce(ctx, "k", 20*time.Millisecond, func(*cache.Entry) bool { return true },
		func(context.Context) error { return nil })
	if err != nil || !filled {
		t.Fatalf("FillOnce after the holder died = filled %v, %v", filled, err)
	}
	if d := time.Since(start); d > 6*ttl {
		t.Fatalf("took %s to take over a %s lease", d, ttl)
	}
}

// With the bucket down, FillOnce fetches anyway.
func TestFillOnceFailsOpen(t *testing.T) {
	g := startGateway(t)
	s := g.Open(t, g.Bucket(), "", cache.S3Options{OpTimeout: time.Second})
	g.Stop()
	ran := false
	_, filled, err := s.FillOnce(context.Background(), "k", 10*time.Millisecond, func(*cache.Entry) bool { return true },
		func(context.Context) error { ran = true; return nil })
	if err != nil || !filled || !ran {
		t.Fatalf("FillOnce with the bucket down: filled %v, ran %v, %v", filled, ran, err)
	}
	if st := s.Stats(); st.FillFailOpen != 1 {
		t.Fatalf("stats %+v: want one fail-open fill", st)
	}
}
