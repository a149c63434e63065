package redact

import "testing"

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://registry.example/api", "https://registry.example/api"},
		{"http://alice:s3cret@host:8080/x", "http://alice:***@host:8080/x"},
		{"https://t0ken@host", "https://***@host"},
		{"http://alice:p@ss@host/p@th", "http://alice:***@host/p@th"},
		{`upstream http://alice:pw@127.0.0.1:1: Get "http://alice:***@127.0.0.1:1/x": refused`,
			`upstream http://alice:***@127.0.0.1:1: Get "http://alice:***@127.0.0.1:1/x": refused`},
		{"https://a:b@one.example,https://open.example", "https://a:***@one.example,https://open.example"},
		{"mail me at bob@example.org", "mail me at bob@example.org"},
		{"http://host/?next=a@b", "http://host/?next=a@b"},
		{`upstream="http://u:%40pw@h"`, `upstream="http://u:***@h"`},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
