package mirrorsync_test

import (
	"encoding/json"
	"testing"

	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/status"
)

// A round of serve's periodic sync (Every) is shown on the status page: what
// the mirror wired by proxy.Open records, as /status.json reports it.
func TestRoundIsRecordedOnTheStatusPage(t *testing.T) {
	reg := catalogueRegistry()
	up := reg.Start(t).URL
	m := startMirror(t, []string{up}, []string{"http://127.0.0.1:1"})
	res := m.sync.Round(t.Context(), mirrorsync.Options{Jobs: 2})
	if len(res) != 2 {
		t.Fatalf("results: %+v", res)
	}
	var rep status.Report
	if err := json.Unmarshal(get(t, m.URL+"/status.json").Body, &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]status.Sync{}
	for _, s := range rep.Syncs {
		got[s.API] = s
	}
	if rp := got["refpack"]; rp.Upstream != up || rp.Result != "ok" || rp.Packages != len(catalogueVersions) || rp.Items != len(catalogueVersions) {
		t.Errorf("refpack sync on the status page: %+v", rp)
	}
	if hy := got["hydrilla"]; hy.Result != "failed" || hy.Error == "" {
		t.Errorf("hydrilla sync (upstream down) on the status page: %+v", hy)
	}
}
