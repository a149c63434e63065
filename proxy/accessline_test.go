package proxy_test

import (
	"strings"
	"testing"
)

// The access line names the upstream an answer came from, and the path with
// its query.
func TestAccessLineNamesTheUpstream(t *testing.T) {
	_, up := newRegistry(t)
	var logs syncBuffer
	m := startLoggedMirror(t, &logs, "", []string{up}, nil)
	get(t, m.URL+"/packages/vendor/country-codes/meta?version=1.2.0")
	get(t, m.URL+"/packages/vendor/country-codes/meta?version=1.2.0")
	lines := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "msg=request") && strings.Contains(l, `path="/packages/vendor/country-codes/meta?version=1.2.0"`) {
			lines++
			if !strings.Contains(l, "upstream="+up) || !strings.Contains(l, "id=") {
				t.Errorf("access line without upstream or id: %s", l)
			}
		}
	}
	if lines != 2 {
		t.Errorf("%d access lines, want 2:\n%s", lines, logs.String())
	}
}
