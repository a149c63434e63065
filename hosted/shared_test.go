package hosted

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// sharedDisk is a disk store that says it is shared, as a fleet's bucket is:
// two caches over it stand for two replicas.
type sharedDisk struct{ *cache.Disk }

func (sharedDisk) Shared() bool { return true }

func TestReplicasSeeEachOthersPushes(t *testing.T) {
	ctx := context.Background()
	d, err := cache.OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	replica := func() *fixture {
		c, err := cache.New(ctx, sharedDisk{d}, d.TempDir(), cache.Options{MemoryBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rp, err := NewRefPack(ctx, c, Options{Owners: []string{"ourco"}, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return &fixture{t: t, disk: d, cache: c, rp: rp}
	}
	a, b := replica(), replica()

	a.push("ourco", registrytest.MakeZip("x", "1.0.0"))
	// A version B has not seen is looked for in the store at once.
	if got := b.get("/packages/ourco/x?version=1.0.0"); got.Code != http.StatusOK {
		t.Fatalf("B: %d %s", got.Code, got.Body)
	}
	now = now.Add(5 * time.Second)
	a.push("ourco", registrytest.MakeZip("x", "1.1.0"))
	// B's index is older than RefreshEvery: latest is read again.
	if got := b.get("/packages/ourco/x"); !strings.Contains(got.Header().Get("Content-Disposition"), "1.1.0") {
		t.Fatalf("B's latest: %q", got.Header().Get("Content-Disposition"))
	}
	// A push through B is judged against what A published.
	if ans := b.push("ourco", registrytest.MakeZip("x", "1.0.5")); ans.Status != http.StatusConflict {
		t.Fatalf("B accepted a version below A's: %d %s", ans.Status, ans.Body)
	}
	// An archive through B shows on A after its refresh.
	if ans := b.rp.Archive(ctx, "ourco/x", "version=1.1.0", "k"); ans.Status != http.StatusOK {
		t.Fatal(ans.Status)
	}
	now = now.Add(5 * time.Second)
	if got := a.get("/packages/ourco/x/versions"); !strings.Contains(got.Body.String(), `{"version":"1.1.0","createdAt":"`+registrytest.DefaultCreated+`","isArchived":true}`) {
		t.Fatalf("A's versions: %s", got.Body)
	}
	q, _ := refpack.ParseListQuery(nil, false)
	if p, _ := a.rp.MergeList(ctx, q, nil); len(p.Items) != 1 || p.Items[0]["version"] != "1.0.0" {
		t.Fatalf("A's list: %+v", p)
	}
}
