package refpack

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// wantArrayOfObjects is the reference: encoding/json's verdict.
func wantArrayOfObjects(b []byte) bool {
	if !json.Valid(b) {
		return false
	}
	var arr []json.RawMessage
	if json.Unmarshal(b, &arr) != nil || arr == nil {
		return false
	}
	for _, el := range arr {
		if len(el) == 0 || el[0] != '{' {
			return false
		}
	}
	return true
}

func TestCheckArrayOfObjects(t *testing.T) {
	cases := []string{
		`[]`, ` [ ] `, `[{}]`, `[{},{}]`, `[{"a":1,"b":[1,2,{"c":null}],"d":"x\"\\\/\b\f\n\r\t\u00e9"}]`,
		`[{"n":-0.5e+10,"m":0,"k":1E5,"j":-0,"i":10.25}]`, "[{\"s\":\"\xff\xfe\"}]", `[{"t":true,"f":false,"z":null}]`,
		``, ` `, `{}`, `[`, `[{]`, `[{}`, `[{},]`, `[,]`, `[{}{}]`, `[1]`, `[{}, 1]`, `["a"]`, `[[]]`, `[null]`,
		`[{"a":01}]`, `[{"a":1.}]`, `[{"a":.5}]`, `[{"a":1e}]`, `[{"a":-}]`, `[{"a":+1}]`, `[{"a":tru}]`, `[{"a":nul}]`,
		`[{"a":"\x"}]`, `[{"a":"\u12"}]`, `[{"a":"\u12g4"}]`, "[{\"a\":\"\x01\"}]", `[{a:1}]`, `[{"a" 1}]`, `[{"a":1,}]`,
		`[{"a":1 "b":2}]`, `[] x`, `[][]`, `[{}] `, "[{}]\n", `[{"a":[1,]}]`, `[{"a":[,1]}]`, `[{"a":{"b":}}]`,
	}
	for _, c := range cases {
		err := checkArrayOfObjects(strings.NewReader(c))
		if want := wantArrayOfObjects([]byte(c)); (err == nil) != want {
			t.Errorf("checkArrayOfObjects(%q) = %v, encoding/json says %v", c, err, want)
		}
	}
	deep := "[{\"a\":" + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + "}]"
	if err := checkArrayOfObjects(strings.NewReader(deep)); err == nil || !strings.Contains(err.Error(), "too deeply") {
		t.Errorf("deep nesting: %v", err)
	}
	// A huge string passes through a bounded buffer.
	big := `[{"s":"` + strings.Repeat("x", 8<<20) + `"}]`
	if err := checkArrayOfObjects(strings.NewReader(big)); err != nil {
		t.Errorf("big string: %v", err)
	}
}

// FuzzCheckArrayOfObjects compares the streaming checker with encoding/json.
func FuzzCheckArrayOfObjects(f *testing.F) {
	for _, s := range []string{`[]`, `[{"a":[1,{"b":"\u00e9"}],"c":-1.5e3}]`, `[1]`, `[{}] x`, `[{"a":01}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) >= maxJSONDepth {
			return // encoding/json allows deeper nesting than the checker
		}
		err := checkArrayOfObjects(bytes.NewReader(b))
		if want := wantArrayOfObjects(b); (err == nil) != want {
			t.Fatalf("checkArrayOfObjects(%q) = %v, encoding/json says %v", b, err, want)
		}
	})
}
