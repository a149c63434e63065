package config

import (
	"os"
	"strings"
	"testing"
)

// The README's configuration reference must name every key, its variable and
// its default, so the document cannot drift from the code.
func TestREADMENamesEveryKey(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, r := range Reference() {
		row := "| `" + r[0] + "` | `" + r[1] + "` |"
		if !strings.Contains(readme, row) {
			t.Errorf("README has no reference row for %s (%s)", r[0], r[1])
		}
	}
}
