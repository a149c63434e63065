package hydrilla

import (
	"slices"
	"testing"
)

// The fast path of Version.UnmarshalJSON answers only where the JSON decoder's
// path gives the same version; everything else falls through to that path,
// errors included.
var versionForms = []string{
	`[1]`, `[2022, 3, 1]`, ` [ 1 ,2,3 ] `, "[1,\n2]", `[1,0,0]`, `[0]`, `[0,0]`, `[]`, `[01]`, `[1,,2]`,
	`[1,]`, `[,1]`, `[-1]`, `[1.0]`, `[1e3]`, `["1"]`, `[1 2]`, `1`, `[`, `]`, `[9999999999999999999]`,
	`[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33]`,
	`[00]`, `[0, 1]`, `[10]`, "[1\t,2]", `[[1]]`, `[null]`, `[true]`,
}

func checkFastVersion(t *testing.T, in string) {
	t.Helper()
	fast, ok := fastVersion([]byte(in))
	slow, err := decodeVersion([]byte(in))
	if !ok {
		return
	}
	if err != nil {
		t.Errorf("%q: fast path gives %v, the decoder refuses it: %v", in, fast, err)
	} else if !slices.Equal(fast, slow) {
		t.Errorf("%q: fast path gives %v, the decoder %v", in, fast, slow)
	}
}

func TestFastVersionAgreesWithTheDecoder(t *testing.T) {
	taken := 0
	for _, in := range versionForms {
		checkFastVersion(t, in)
		if _, ok := fastVersion([]byte(in)); ok {
			taken++
		}
	}
	if taken < 5 {
		t.Fatalf("the fast path took only %d of the common forms", taken)
	}
}

func FuzzFastVersion(f *testing.F) {
	for _, in := range versionForms {
		f.Add(in)
	}
	f.Fuzz(checkFastVersion)
}
