package proxy

import (
	"strconv"
	"testing"

	"github.com/regmirror/regmirror/config"
)

// The memos fit their byte budget; a target answered since eviction last
// looked at it survives a client cycling through new ones, one nobody asks
// for does not.
func TestFastMemosEvictLeastRecentlyUsed(t *testing.T) {
	cfg := config.Default()
	f := newFastHits(&Server{cfg: &cfg})
	f.budget = 10 * 1000
	memo := func(target string) *hitMemo { return &hitMemo{target: target, size: 1000} }
	hot, cold := memo("/hot"), memo("/cold")
	f.add(hot)
	f.add(cold)
	for i := range 1000 {
		hot.used.Store(true) // answered on the lane between the attacker's requests
		f.add(memo("/attack/" + strconv.Itoa(i)))
		if f.bytes > f.budget || len(f.memos) > 10 {
			t.Fatalf("after %d targets: %d memos, %d bytes; budget %d", i, len(f.memos), f.bytes, f.budget)
		}
	}
	if f.memos["/hot"] != hot {
		t.Error("a target answered all along was evicted by a client cycling through new ones")
	}
	if f.memos["/cold"] != nil {
		t.Error("a target nobody asked for again outlived 1000 newer ones")
	}
	n := 0
	for m := f.ring.next; m != &f.ring; m = m.next {
		if f.memos[m.target] != m {
			t.Fatalf("the ring holds %s, which the map does not", m.target)
		}
		n++
	}
	if n != len(f.memos) {
		t.Errorf("the ring holds %d memos, the map %d", n, len(f.memos))
	}
	f.forget("/hot", hot)
	if f.memos["/hot"] != nil || f.bytes != int64(1000*len(f.memos)) {
		t.Errorf("forget: %d memos, %d bytes", len(f.memos), f.bytes)
	}
}
