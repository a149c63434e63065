package refpack

import (
	"reflect"
	"testing"
)

func TestSortNewestFirst(t *testing.T) {
	vs := []VersionInfo{{Version: "1.0.0"}, {Version: "1.10.0"}, {Version: "1.2.0-rc.1"}, {Version: "1.2.0"}, {Version: "2.0.0-alpha"}, {Version: "1.2.0+b"}}
	SortNewestFirst(vs)
	var got []string
	for _, v := range vs {
		got = append(got, v.Version)
	}
	want := []string{"2.0.0-alpha", "1.10.0", "1.2.0+b", "1.2.0", "1.2.0-rc.1", "1.0.0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestListedVersion(t *testing.T) {
	for _, tc := range []struct {
		in   []VersionInfo
		want string
		ok   bool
	}{
		{[]VersionInfo{{Version: "1.0.0"}, {Version: "2.0.0", IsArchived: true}}, "1.0.0", true},
		{[]VersionInfo{{Version: "1.0.0", IsArchived: true}, {Version: "2.0.0", IsArchived: true}}, "2.0.0", true},
		{[]VersionInfo{{Version: "1.0.0-rc.1"}, {Version: "1.0.0-rc.2"}}, "1.0.0-rc.2", true},
		{nil, "", false},
	} {
		got, ok := ListedVersion(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ListedVersion(%v) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOrderedJSONAndDisposition(t *testing.T) {
	got := string(OrderedJSON(map[string]any{"z": 1, "version": "1.0.0", "id": "a/b", "a": true}, ManifestKeys))
	if want := `{"id":"a/b","version":"1.0.0","a":true,"z":1}`; got != want {
		t.Errorf("OrderedJSON = %s, want %s", got, want)
	}
	if got, want := ContentDisposition("ourco/x", "1.0.0"), `attachment; filename="ourco-x-1.0.0.refpack.zip"`; got != want {
		t.Errorf("ContentDisposition = %s, want %s", got, want)
	}
}
