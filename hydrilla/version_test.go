package hydrilla

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want Version // nil: error
		str  string
	}{
		{"2021.11.10", Version{2021, 11, 10}, "2021.11.10"},
		{"1", Version{1}, "1"},
		{"2.0", Version{2}, "2"},
		{"2.0.0.0", Version{2}, "2"},
		{"0.4", Version{0, 4}, "0.4"},
		{"0.0.1", Version{0, 0, 1}, "0.0.1"},
		{"1.0.2.0", Version{1, 0, 2}, "1.0.2"},
		{"01.002", Version{1, 2}, "1.2"}, // the real server's int() takes these
		{"9007199254740991", Version{MaxVersionNumber}, "9007199254740991"},
		{"00000000000000000000000001", Version{1}, "1"},
		{"", nil, ""},
		{"0", nil, ""},
		{"0.0.0", nil, ""},
		{".", nil, ""},
		{"1.", nil, ""},
		{".1", nil, ""},
		{"1..2", nil, ""},
		{"-1", nil, ""},
		{"+1", nil, ""},
		{"1.-2", nil, ""},
		{"1.a", nil, ""},
		{"1 .2", nil, ""},
		{" 1", nil, ""},
		{"1e3", nil, ""},
		{"2021.11.2-2", nil, ""}, // the revision form is ParseVersionRevision's
		{"9007199254740992", nil, ""},
		{"99999999999999999999999", nil, ""},
		{"１", nil, ""}, // fullwidth digit
		{strings.Repeat("1.", MaxVersionParts) + "1", nil, ""},
		{strings.Repeat("0", 600) + "1", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParseVersion(%q) = %v, want error", tt.in, got)
				}
				if !errors.Is(err, ErrBadVersion) {
					t.Errorf("error %v does not wrap ErrBadVersion", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVersion(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseVersion(%q) = %v, want %v", tt.in, []int(got), []int(tt.want))
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

func TestParseVersionRevision(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		rev     int
		wantErr bool
	}{
		{"2021.11.2-2", Version{2021, 11, 2}, 2, false},
		{"2021.11.10", Version{2021, 11, 10}, 0, false},
		{"1.0-1", Version{1}, 1, false},
		{"1-0", nil, 0, true},
		{"1-", nil, 0, true},
		{"-1", nil, 0, true},
		{"1-2-3", nil, 0, true},
		{"1-x", nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, rev, err := ParseVersionRevision(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %v-%d, want error", v, rev)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v, tt.want) || rev != tt.rev {
				t.Errorf("got %v-%d, want %v-%d", v, rev, tt.want, tt.rev)
			}
		})
	}
}

func TestVersionString(t *testing.T) {
	tests := []struct {
		v    Version
		want string
	}{
		{Version{2, 0}, "2"},
		{Version{2021, 11, 10}, "2021.11.10"},
		{Version{1, 0, 2, 0, 0}, "1.0.2"},
		{Version{0}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%v.String() = %q, want %q", []int(tt.v), got, tt.want)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	tests := []struct {
		a, b Version
		want int
	}{
		{Version{1}, Version{1, 0}, 0},
		{Version{1, 0, 0}, Version{1}, 0},
		{nil, Version{0, 0}, 0},
		{Version{1}, Version{1, 0, 1}, -1},
		{Version{1, 0, 1}, Version{1}, 1},
		{Version{2021, 11, 10}, Version{2021, 11, 9}, 1},
		{Version{2021, 11, 10}, Version{2021, 12}, -1},
		{Version{0, 4}, Version{1}, -1},
		{Version{10}, Version{9, 99}, 1}, // integers, not strings
		{Version{1, 10}, Version{1, 9}, 1},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", []int(tt.a), []int(tt.b), got, tt.want)
		}
		if got := tt.b.Compare(tt.a); got != -tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", []int(tt.b), []int(tt.a), got, -tt.want)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	tests := []struct {
		in   string
		want Version // nil: error
	}{
		{`[2021, 11, 10]`, Version{2021, 11, 10}},
		{`[2,0]`, Version{2}},
		{` [ 1 , 0 , 3 ] `, Version{1, 0, 3}},
		{`[]`, nil},
		{`[0]`, nil},
		{`null`, nil},
		{`"1.2"`, nil},
		{`[1.5]`, nil},
		{`[1.0]`, nil},
		{`[1e2]`, nil},
		{`[-1]`, nil},
		{`["1"]`, nil},
		{`[9007199254740992]`, nil},
		{`[1, [2]]`, nil},
		{`{"a":1}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v Version
			err := json.Unmarshal([]byte(tt.in), &v)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("got %v, want error", []int(v))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v, tt.want) {
				t.Errorf("got %v, want %v", []int(v), []int(tt.want))
			}
			out, _ := json.Marshal(v)
			var back Version
			if err := json.Unmarshal(out, &back); err != nil || !slices.Equal(back, v) {
				t.Errorf("round trip %s: %v %v", out, back, err)
			}
		})
	}
	if b, _ := json.Marshal(Version(nil)); string(b) != "[]" {
		t.Errorf("nil version marshals as %s", b)
	}
}

// FuzzParseVersion checks the properties the mirror relies on: a parsed
// version is normalised, within the limits, has a canonical string that
// parses back to itself, and survives JSON.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"2021.11.10", "1", "2.0", "0.0.1", "01.2", "1..2", "", "-1", "2021.11.2-2", "9007199254740992"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			if !errors.Is(err, ErrBadVersion) {
				t.Fatalf("error %v does not wrap ErrBadVersion", err)
			}
			return
		}
		if len(v) == 0 || len(v) > MaxVersionParts || v[len(v)-1] == 0 {
			t.Fatalf("ParseVersion(%q) = %v: not normalised", s, []int(v))
		}
		for _, x := range v {
			if x < 0 || x > MaxVersionNumber {
				t.Fatalf("ParseVersion(%q) = %v: part out of range", s, []int(v))
			}
		}
		str := v.String()
		back, err := ParseVersion(str)
		if err != nil || !slices.Equal(back, v) || back.String() != str {
			t.Fatalf("ParseVersion(%q) = %v; String %q parses to %v, %v", s, []int(v), str, back, err)
		}
		if v.Compare(back) != 0 || v.Compare(append(slices.Clone(v), 0)) != 0 {
			t.Fatalf("Compare is not reflexive for %v", []int(v))
		}
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Version
		if err := json.Unmarshal(data, &fromJSON); err != nil || !slices.Equal(fromJSON, v) {
			t.Fatalf("JSON round trip of %v via %s: %v, %v", []int(v), data, fromJSON, err)
		}
		if rv, rev, err := ParseVersionRevision(s); err != nil || rev != 0 || !slices.Equal(rv, v) {
			t.Fatalf("ParseVersionRevision(%q) = %v, %d, %v", s, rv, rev, err)
		}
	})
}
