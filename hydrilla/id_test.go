package hydrilla

import (
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"helloapple", true},
		{"hello-message", true},
		{"example.org-minimal", true},
		{"a", true},
		{"0", true},
		{"a..b", true}, // one segment; cannot traverse
		{".hidden", true},
		{"x.", true},
		{strings.Repeat("a", MaxIDLen), true},
		{"", false},
		{".", false},
		{"..", false},
		{"../etc", false},
		{"a/b", false},
		{`a\b`, false},
		{"Hello", false},
		{"example_org_minimal", false}, // the seed's underscores: the real server refuses them
		{"a b", false},
		{"a%2f", false},
		{"ą", false},
		{"a\x00", false},
		{strings.Repeat("a", MaxIDLen+1), false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestValidHex(t *testing.T) {
	good := "04d9c4e50c1ce40f9b7b7699a9202f23eaee31069e288502284dbbea7a38e468"
	tests := []struct {
		s    string
		want bool
	}{
		{good, true},
		{strings.Repeat("0", 64), true},
		{strings.ToUpper(good), false},
		{good[:63], false},
		{good + "0", false},
		{good[:63] + "g", false},
		{"", false},
		{"../" + good[3:], false},
	}
	for _, tt := range tests {
		if got := ValidHex(tt.s); got != tt.want {
			t.Errorf("ValidHex(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
