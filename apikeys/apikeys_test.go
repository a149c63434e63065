package apikeys

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	file := "# keys of ourco\n" +
		Line("ci", "s3cret-ci", "ourco", "ourlab") +
		"\n   \n" +
		"admin " + strings.ToUpper(Hash("s3cret-admin")) + " *   # every hosted owner\n"
	keys, err := Parse(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("%d keys, want 2", len(keys))
	}
	if keys[0].Name != "ci" || !reflect.DeepEqual(keys[0].Owners, []string{"ourco", "ourlab"}) || keys[0].AllOwners {
		t.Errorf("first key %+v", keys[0])
	}
	if keys[1].Name != "admin" || !keys[1].AllOwners || keys[1].Owners != nil {
		t.Errorf("second key %+v", keys[1])
	}
}

func TestParseRefuses(t *testing.T) {
	h := Hash("k")
	for name, file := range map[string]string{
		"two fields":     "ci " + h + "\n",
		"four fields":    "ci " + h + " ourco extra\n",
		"short hash":     "ci abcd ourco\n",
		"not hex":        "ci " + strings.Repeat("z", 64) + " ourco\n",
		"bad owner":      "ci " + h + " our/co\n",
		"empty owner":    "ci " + h + " ourco,\n",
		"duplicate name": "ci " + h + " a\nci " + Hash("other") + " b\n",
		"duplicate key":  "ci " + h + " a\ncd " + h + " b\n",
	} {
		_, err := Parse(strings.NewReader(file))
		if !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: err %v, want ErrBadFile", name, err)
		}
		if err != nil && strings.Contains(err.Error(), h) {
			t.Errorf("%s: the error quotes the hash: %v", name, err)
		}
	}
}

func TestLookupAndAuthorize(t *testing.T) {
	s := New(mustParse(t, Line("ci", "key-ci", "ourco")+Line("admin", "key-admin")))
	if k, ok := s.Lookup("key-ci"); !ok || k.Name != "ci" {
		t.Fatalf("Lookup(key-ci) = %v, %v", k, ok)
	}
	if _, ok := s.Lookup("key-c"); ok {
		t.Fatal("a prefix of a key was accepted")
	}
	if _, ok := s.Lookup(""); ok {
		t.Fatal("the empty key was accepted")
	}
	for _, tc := range []struct {
		header http.Header
		owner  string
		want   Decision
	}{
		{http.Header{}, "ourco", Unauthorized},
		{http.Header{"X-Api-Key": {"wrong"}}, "ourco", Unauthorized},
		{http.Header{"X-Api-Key": {"key-ci"}}, "ourco", Allowed},
		{http.Header{"X-Api-Key": {"key-ci"}}, "ourlab", Forbidden},
		{http.Header{"Authorization": {"Bearer key-ci"}}, "ourco", Allowed},
		{http.Header{"Authorization": {"bearer key-admin"}}, "ourlab", Allowed},
		{http.Header{"Authorization": {"Basic key-ci"}}, "ourco", Unauthorized},
	} {
		if _, got := s.Authorize(tc.header, tc.owner); got != tc.want {
			t.Errorf("Authorize(%v, %s) = %v, want %v", tc.header, tc.owner, got, tc.want)
		}
	}
	if Unauthorized.Status() != 401 || Forbidden.Status() != 403 || Allowed.Status() != 0 {
		t.Error("statuses")
	}
}

func TestWritable(t *testing.T) {
	keys := mustParse(t, Line("ci", "a", "ourco", "elsewhere")+Line("admin", "b"))
	hosted := []string{"ourco", "ourlab"}
	if got := keys[0].Writable(hosted); !reflect.DeepEqual(got, []string{"ourco"}) {
		t.Errorf("ci may write %v", got)
	}
	if got := keys[1].Writable(hosted); !reflect.DeepEqual(got, hosted) {
		t.Errorf("admin may write %v", got)
	}
}

func TestReloadKeepsOldSetOnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	write := func(s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(Line("ci", "one", "ourco"))
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	write(Line("ci", "two", "ourco"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup("one"); ok {
		t.Error("the old key still works after a reload")
	}
	if _, ok := s.Lookup("two"); !ok {
		t.Error("the new key does not work after a reload")
	}
	write("broken line\n")
	if err := s.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if _, ok := s.Lookup("two"); !ok {
		t.Error("a failed reload dropped the keys in use")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("a missing file loaded")
	}
}

func mustParse(t *testing.T, s string) []*Key {
	t.Helper()
	keys, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
