package hosted

import (
	"net/http"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/apikeys"
)

func TestWriteTargets(t *testing.T) {
	f := newFixture(t, "ourco", "ourlab")
	keys, err := apikeys.Parse(strings.NewReader(
		apikeys.Line("ci", "key-ci", "ourco") + apikeys.Line("admin", "key-admin") + apikeys.Line("other", "key-other", "elsewhere")))
	if err != nil {
		t.Fatal(err)
	}
	set := apikeys.New(keys)
	xkey := func(k string) http.Header { return http.Header{"X-Api-Key": {k}} }
	bearer := func(k string) http.Header { return http.Header{"Authorization": {"Bearer " + k}} }
	for _, tc := range []struct {
		name     string
		h        http.Header
		owner    string
		hasOwner bool
		hosted   bool
		status   int
		to       string
	}{
		{"form, hosted, no key", http.Header{}, "ourco", true, true, 401, ""},
		{"form, hosted, wrong key", xkey("nope"), "ourco", true, true, 401, ""},
		{"form, hosted, key for it", xkey("key-ci"), "ourco", true, true, 0, "ourco"},
		{"form, hosted in other case", xkey("key-ci"), "OurCo", true, true, 0, "ourco"},
		{"form, hosted, key for another", xkey("key-ci"), "ourlab", true, true, 403, ""},
		{"form, hosted, wildcard key", bearer("key-admin"), "ourlab", true, true, 0, "ourlab"},
		{"form, not hosted", xkey("key-ci"), "vendor", true, false, 0, ""},
		{"raw, one hosted owner", bearer("key-ci"), "", false, true, 0, "ourco"},
		{"raw, several hosted owners", bearer("key-admin"), "", false, true, 400, ""},
		{"raw, no hosted owner", bearer("key-other"), "", false, false, 0, ""},
		{"raw, unknown key", bearer("upstream-key"), "", false, false, 0, ""},
	} {
		w := f.rp.PushTarget(set, tc.h, tc.owner, tc.hasOwner)
		status := 0
		if w.Refuse != nil {
			status = w.Refuse.Status
		}
		if w.Hosted != tc.hosted || status != tc.status || (tc.to != "" && w.Owner != tc.to) {
			t.Errorf("%s: %+v (status %d), want hosted=%v status %d owner %q", tc.name, w, status, tc.hosted, tc.status, tc.to)
		}
	}
	if w := f.rp.PushTarget(nil, xkey("key-ci"), "ourco", true); w.Refuse == nil || w.Refuse.Status != 401 {
		t.Errorf("without a keys file a hosted push is %+v, want 401", w)
	}
	for id, want := range map[string]int{"ourco/x": 0, "ourlab/x": 403, "vendor/x": -1, "x": -1} {
		w := f.rp.ArchiveTarget(set, xkey("key-ci"), id)
		got := -1
		if w.Hosted {
			got = 0
			if w.Refuse != nil {
				got = w.Refuse.Status
			}
		}
		if got != want {
			t.Errorf("archive %s: %+v, want %d", id, w, want)
		}
	}
}
