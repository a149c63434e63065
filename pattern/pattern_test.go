package pattern

import (
	"errors"
	"strings"
	"testing"
)

// TestParseNormalises checks the accepted pattern forms through their
// normalised spelling, which exposes scheme, port, labels, segments, the
// wildcards and the trailing slash at once.
func TestParseNormalises(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"http", "http://example.com/a/b", "http://example.com/a/b"},
		{"https", "https://example.com/a", "https://example.com/a"},
		{"ftp", "ftp://example.com/pub", "ftp://example.com/pub"},
		{"file", "file:///etc/hosts", "file:///etc/hosts"},
		{"file root", "file:///", "file:///"},
		{"file no path", "file://", "file://"},
		{"http star", "http*://example.com/a", "http*://example.com/a"},
		{"scheme case", "HTTPS://example.com/", "https://example.com/"},
		{"http star case", "HTTP*://example.com/", "http*://example.com/"},
		{"host lower-cased", "http://ExAmPlE.COM/", "http://example.com/"},
		{"path case kept", "http://example.com/AbC/dEf", "http://example.com/AbC/dEf"},
		{"no percent decoding", "http://example.com/a%2Fb/%41", "http://example.com/a%2Fb/%41"},
		{"default port http", "http://example.com:80/", "http://example.com/"},
		{"default port https", "https://example.com:443/", "https://example.com/"},
		{"default port ftp", "ftp://example.com:21/", "ftp://example.com/"},
		{"other scheme's default port kept", "http://example.com:443/", "http://example.com:443/"},
		{"port kept", "https://example.com:8443/x", "https://example.com:8443/x"},
		{"port leading zeros", "http://example.com:0080/", "http://example.com/"},
		{"port 65535", "http://example.com:65535/", "http://example.com:65535/"},
		{"port 1", "http://example.com:1/", "http://example.com:1/"},
		{"empty port is no port", "http://example.com:/a", "http://example.com/a"},
		{"user info dropped", "https://user:pw@example.com/a", "https://example.com/a"},
		{"ipv6 host", "http://[::1]:8080/a", "http://[::1]:8080/a"},
		{"ipv6 host lower-cased", "http://[FE80::1]/", "http://[fe80::1]/"},
		{"empty labels dropped", "http://.example..com./a", "http://example.com/a"},
		{"empty segments dropped", "http://example.com//a///b", "http://example.com/a/b"},
		{"empty segments keep trailing slash", "http://example.com/a//", "http://example.com/a/"},
		{"only slashes", "http://example.com///", "http://example.com/"},
		{"no path", "http://example.com", "http://example.com"},
		{"host *", "http://*.example.com/", "http://*.example.com/"},
		{"host **", "http://**.example.com/", "http://**.example.com/"},
		{"host ***", "http://***.example.com/", "http://***.example.com/"},
		{"host wildcard alone", "http://***/", "http://***/"},
		{"host wildcard after empty label", "http://.*.example.com/", "http://*.example.com/"},
		{"path *", "http://example.com/a/*", "http://example.com/a/*"},
		{"path **", "http://example.com/a/**", "http://example.com/a/**"},
		{"path ***", "http://example.com/a/***", "http://example.com/a/***"},
		{"path wildcard with slash", "http://example.com/a/***/", "http://example.com/a/***/"},
		{"path wildcard alone", "http://example.com/*", "http://example.com/*"},
		{"literal **** host", "http://****.example.com/", "http://****.example.com/"},
		{"literal a* host", "http://a*.example.com/", "http://a*.example.com/"},
		{"literal * not leftmost", "http://a.*.example.com/", "http://a.*.example.com/"},
		{"literal **** path", "http://example.com/a/****", "http://example.com/a/****"},
		{"literal a* path", "http://example.com/a*", "http://example.com/a*"},
		{"literal * not last", "http://example.com/*/b", "http://example.com/*/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := p.String(); got != tt.want {
				t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseWildcardFields(t *testing.T) {
	tests := []struct {
		in                 string
		hostWild, pathWild wildcard
		host, path         string
	}{
		{"http://*.a.b/x/*", wildOne, wildOne, "a.b", "x"},
		{"http://**.a.b/x/**", wildTwo, wildTwo, "a.b", "x"},
		{"http://***.a.b/x/***", wildAny, wildAny, "a.b", "x"},
		{"http://****.a.b/x/****", wildNone, wildNone, "****.a.b", "x/****"},
		{"http://a*.b/*x", wildNone, wildNone, "a*.b", "*x"},
		{"http://a.*.b/*/x", wildNone, wildNone, "a.*.b", "*/x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.hostWild != tt.hostWild || p.pathWild != tt.pathWild {
				t.Errorf("wildcards = %v, %v; want %v, %v", p.hostWild, p.pathWild, tt.hostWild, tt.pathWild)
			}
			if h := strings.Join(p.host, "."); h != tt.host {
				t.Errorf("host = %q, want %q", h, tt.host)
			}
			if s := strings.Join(p.path, "/"); s != tt.path {
				t.Errorf("path = %q, want %q", s, tt.path)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, reason string
	}{
		{"no scheme", "example.com/a", "no scheme"},
		{"no slashes", "http:example.com", "no scheme"},
		{"unknown scheme", "gopher://example.com/", "unsupported scheme"},
		{"ws scheme", "ws://example.com/", "unsupported scheme"},
		{"https* is not a scheme", "https*://example.com/", "unsupported scheme"},
		{"http** is not a scheme", "http**://example.com/", "unsupported scheme"},
		{"query", "http://example.com/a?b=c", "query"},
		{"empty query", "http://example.com/a?", "query"},
		{"query in host", "http://example.com?x", "query"},
		{"fragment", "http://example.com/a#b", "fragment"},
		{"empty fragment", "http://example.com/#", "fragment"},
		{"port 0", "http://example.com:0/", "out of range"},
		{"port 00", "http://example.com:00/", "out of range"},
		{"port 65536", "http://example.com:65536/", "out of range"},
		{"huge port", "http://example.com:99999999999999999999999/", "out of range"},
		{"port not a number", "http://example.com:8o/", "not a decimal"},
		{"port signed", "http://example.com:+80/", "not a decimal"},
		{"port on http*", "http*://example.com:8080/", "http*"},
		{"default port on http*", "http*://example.com:80/", "http*"},
		{"file with host", "file://host/a", "file://"},
		{"file with port", "file://:78/a", "file://"},
		{"file with localhost", "file://localhost/etc", "file://"},
		{"no host", "http:///a", "empty host"},
		{"only port", "http://:80/a", "empty host"},
		{"only dots", "https://.../", "empty host"},
		{"only user info", "http://user@/", "empty host"},
		{"unterminated bracket", "http://[::1/", "unterminated"},
		{"junk after bracket", "http://[::1]x/", "after ']'"},
		{"bracket not ipv6", "http://[1.2.3.4]/", "IPv6"},
		{"bracket garbage", "http://[*.example]/", "IPv6"},
		{"stray bracket", "http://exa]mple.com/", "outside"},
		{"space", "http://example.com/a b", "space"},
		{"tab", "http://example.com/\ta", "control"},
		{"newline", "http://exa\nmple.com/", "control"},
		{"invalid utf8", "http://example.com/\xff", "UTF-8"},
		{"empty", "", "no scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tt.in, p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not mention %q", err, tt.reason)
			}
			if !strings.Contains(err.Error(), "URL pattern") {
				t.Errorf("error %q does not say it is about a pattern", err)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	ok := []struct {
		name, in, want string
	}{
		{"query dropped", "https://example.com/a?b=c", "https://example.com/a"},
		{"fragment dropped", "https://example.com/a#frag", "https://example.com/a"},
		{"query and fragment dropped", "https://example.com/a/?b=c#d", "https://example.com/a/"},
		{"query right after host", "https://example.com?b=/c", "https://example.com"},
		{"default port dropped", "https://example.com:443/a", "https://example.com/a"},
		{"other port kept", "https://example.com:80/a", "https://example.com:80/a"},
		{"host lower-cased", "https://WWW.Example.COM/A", "https://www.example.com/A"},
		{"asterisk labels are literal", "https://*.example.com/", "https://*.example.com/"},
		{"asterisk segments are literal", "https://example.com/a/***", "https://example.com/a/***"},
		{"file", "file:///home/user/a.html?x#y", "file:///home/user/a.html"},
		{"path parameters dropped", "https://example.com/a/b;param", "https://example.com/a/b"},
		{"path parameters before the query", "https://example.com/a/b;p?q=;r", "https://example.com/a/b"},
		{"path parameters after a slash", "https://example.com/a/;p", "https://example.com/a/"},
		{"semicolon in an inner segment kept", "https://example.com/a;p/b", "https://example.com/a;p/b"},
		{"path parameters kept for file", "file:///a/b;p", "file:///a/b;p"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURL(tt.in)
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if got := u.String(); got != tt.want {
				t.Errorf("ParseURL(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
			if u.hostWild != wildNone || u.pathWild != wildNone {
				t.Errorf("URL %q parsed with wildcards", tt.in)
			}
		})
	}
	bad := []struct {
		name, in, reason string
	}{
		{"http* is pattern-only", "http*://example.com/", "only allowed in patterns"},
		{"port 0", "https://example.com:0/", "out of range"},
		{"port 65536", "https://example.com:65536/", "out of range"},
		{"unknown scheme", "mailto://x", "unsupported scheme"},
		{"file host", "file://host/a", "file://"},
		{"no host", "https:///a", "empty host"},
		{"garbage", "not a url", "space"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseURL(tt.in)
			if err == nil {
				t.Fatalf("ParseURL(%q) succeeded, want error", tt.in)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.reason) ||
				!strings.Contains(err.Error(), "invalid URL ") {
				t.Errorf("ParseURL(%q) error = %q, want ErrInvalid about %q", tt.in, err, tt.reason)
			}
		})
	}
}

// matchCase is one pattern/URL pair; the groups below cover each rule of
// docs/hydrilla.md "URL patterns" with both outcomes.
type matchCase struct {
	pattern, url string
	want         bool
}

var matchGroups = []struct {
	rule  string
	cases []matchCase
}{
	{"scheme", []matchCase{
		{"http://a.com/", "http://a.com/", true},
		{"http://a.com/", "https://a.com/", false},
		{"https://a.com/", "https://a.com/", true},
		{"https://a.com/", "http://a.com/", false},
		{"ftp://a.com/", "ftp://a.com/", true},
		{"ftp://a.com/", "http://a.com/", false},
		{"http://a.com/", "ftp://a.com/", false},
		{"HTTP://a.com/", "http://a.com/", true},
	}},
	{"http*", []matchCase{
		{"http*://a.com/x", "http://a.com/x", true},
		{"http*://a.com/x", "https://a.com/x", true},
		{"http*://a.com/x", "ftp://a.com/x", false},
		{"http*://a.com/x", "http://a.com:8080/x", false},
		{"http*://a.com/x", "https://a.com:80/x", false},
	}},
	{"file", []matchCase{
		{"file:///home/a", "file:///home/a", true},
		{"file:///home/***", "file:///home/a/b", true},
		{"file:///home/a", "file:///home/b", false},
		{"file:///home/a", "http://home/a", false},
		{"http://home/a", "file:///home/a", false},
	}},
	{"ports", []matchCase{
		{"http://a.com/", "http://a.com:80/", true},
		{"http://a.com:80/", "http://a.com/", true},
		{"https://a.com:443/", "https://a.com/", true},
		{"ftp://a.com:21/", "ftp://a.com/", true},
		{"http://a.com:8080/", "http://a.com:8080/", true},
		{"http://a.com:8080/", "http://a.com/", false},
		{"http://a.com/", "http://a.com:8080/", false},
		{"http://a.com:443/", "https://a.com/", false},
		{"https://a.com:80/", "http://a.com/", false},
	}},
	{"host case and empty labels", []matchCase{
		{"http://A.Com/", "http://a.COM/", true},
		{"http://a..com/", "http://a.com./", true},
		{"http://a.com/", "http://b.a.com/", false},
		{"http://b.a.com/", "http://a.com/", false},
	}},
	{"host *", []matchCase{
		{"http://*.example.com/", "http://banana.example.com/", true},
		{"http://*.example.com/", "http://example.com/", false},
		{"http://*.example.com/", "http://a.b.example.com/", false},
		{"http://*.example.com/", "http://banana.example.org/", false},
		{"http://*/", "http://localhost/", true},
		{"http://*/", "http://a.b/", false},
	}},
	{"host **", []matchCase{
		{"http://**.example.com/", "http://a.b.example.com/", true},
		{"http://**.example.com/", "http://a.b.c.example.com/", true},
		{"http://**.example.com/", "http://banana.example.com/", false},
		{"http://**.example.com/", "http://example.com/", false},
		// In a URL "**" is one label, not two, but Hydrilla keys literals
		// and wildcards in one table: the label "**" reaches the "**" node.
		{"http://**.example.com/", "http://**.example.com/", true},
		{"http://**.example.com/", "http://a.**.example.com/", true},
		{"http://**.example.com/", "http://**.a.example.com/", true},
		{"http://**.example.com/", "http://***.example.com/", false},
		{"http://*.example.com/", "http://**.example.com/", true},
		{"http://***.example.com/", "http://**.example.com/", true},
	}},
	{"host ***", []matchCase{
		{"http://***.example.com/", "http://example.com/", true},
		{"http://***.example.com/", "http://banana.example.com/", true},
		{"http://***.example.com/", "http://a.b.c.example.com/", true},
		{"http://***.example.com/", "http://example.org/", false},
		{"http://***.example.com/", "http://badexample.com/", false},
		{"http://***/", "http://anything.at.all/", true},
	}},
	{"host literal asterisks", []matchCase{
		{"http://a*.example.com/", "http://a*.example.com/", true},
		{"http://a*.example.com/", "http://abc.example.com/", false},
		{"http://****.example.com/", "http://****.example.com/", true},
		{"http://****.example.com/", "http://a.b.example.com/", false},
		{"http://a.*.example.com/", "http://a.*.example.com/", true},
		{"http://a.*.example.com/", "http://a.b.example.com/", false},
		{"http://*.*.example.com/", "http://a.*.example.com/", true},
		{"http://*.*.example.com/", "http://a.b.example.com/", false},
		{"http://example.*/", "http://example.com/", false},
	}},
	{"path case and encoding", []matchCase{
		{"http://a.com/Foo", "http://a.com/Foo", true},
		{"http://a.com/Foo", "http://a.com/foo", false},
		{"http://a.com/%41", "http://a.com/%41", true},
		{"http://a.com/%41", "http://a.com/A", false},
	}},
	{"path empty segments", []matchCase{
		{"http://a.com//x//y", "http://a.com/x/y", true},
		{"http://a.com/x/y", "http://a.com/x///y", true},
		{"http://a.com/x/y", "http://a.com/x/y/z", false},
		{"http://a.com/x/y", "http://a.com/x", false},
	}},
	{"path *", []matchCase{
		{"http://a.com/a/*", "http://a.com/a/b", true},
		{"http://a.com/a/*", "http://a.com/a", false},
		{"http://a.com/a/*", "http://a.com/a/b/c", false},
		{"http://a.com/*", "http://a.com/x", true},
		{"http://a.com/*", "http://a.com", false},
	}},
	{"path **", []matchCase{
		{"http://a.com/a/**", "http://a.com/a/b/c", true},
		{"http://a.com/a/**", "http://a.com/a/b/c/d", true},
		{"http://a.com/a/**", "http://a.com/a/b", false},
		{"http://a.com/a/**", "http://a.com/a", false},
	}},
	{"URL segment spelled like the wildcard", []matchCase{
		// Hydrilla keys literals and wildcards in one table, so a URL's
		// "**" walks into the "**" node as a literal would.
		{"http://a.com/a/**", "http://a.com/a/**", true},
		{"http://a.com/a/**", "http://a.com/a/**/", true},
		{"http://a.com/a/**/", "http://a.com/a/**", false},
		{"http://a.com/**", "http://a.com/**", true},
		{"http://a.com/a/**", "http://a.com/a/***", false},
		{"http://a.com/a/**", "http://a.com/a/*", false},
		{"http://a.com/a/**", "http://a.com/a/**/b", true},
		{"http://a.com/a/**", "http://a.com/b/**", false},
		{"http://a.com/a/*", "http://a.com/a/*", true},
		{"http://a.com/a/*", "http://a.com/a/**", true},
		{"http://a.com/a/***", "http://a.com/a/***", true},
		{"http://a.com/a/***", "http://a.com/a/**", true},
		{"http://a.com/a/****", "http://a.com/a/**", false},
	}},
	{"path ***", []matchCase{
		{"http://a.com/a/***", "http://a.com/a", true},
		{"http://a.com/a/***", "http://a.com/a/b", true},
		{"http://a.com/a/***", "http://a.com/a/b/c/d", true},
		{"http://a.com/a/***", "http://a.com/b", false},
		{"http://a.com/***", "http://a.com", true},
		{"http://a.com/***", "http://a.com/", true},
	}},
	{"path literal asterisks", []matchCase{
		{"http://a.com/a*", "http://a.com/a*", true},
		{"http://a.com/a*", "http://a.com/abc", false},
		{"http://a.com/x/****", "http://a.com/x/****", true},
		{"http://a.com/x/****", "http://a.com/x/y", false},
		{"http://a.com/*/y", "http://a.com/*/y", true},
		{"http://a.com/*/y", "http://a.com/x/y", false},
	}},
	{"trailing slash", []matchCase{
		{"http://a.com/x/", "http://a.com/x/", true},
		{"http://a.com/x/", "http://a.com/x", false},
		{"http://a.com/x", "http://a.com/x/", true},
		{"http://a.com/x", "http://a.com/x", true},
		{"http://a.com/", "http://a.com/", true},
		{"http://a.com/", "http://a.com", false},
		{"http://a.com", "http://a.com/", true},
		{"http://a.com/x/***/", "http://a.com/x/", true},
		{"http://a.com/x/***/", "http://a.com/x/y", false},
		{"http://a.com/x/*/", "http://a.com/x/y/", true},
	}},
	{"query and fragment ignored in URL", []matchCase{
		{"http://a.com/x", "http://a.com/x?y=1", true},
		{"http://a.com/x", "http://a.com/x#top", true},
		{"http://a.com/x/", "http://a.com/x/?q", true},
		{"http://a.com/x/", "http://a.com/x?q/", false},
		{"http://a.com/x/*", "http://a.com/x?/y", false},
	}},
	{"path parameters dropped", []matchCase{
		{"https://example.com/a/b", "https://example.com/a/b;param", true},
		{"https://example.com/a/b/", "https://example.com/a/b/;param", true},
		{"https://example.com/a/b/", "https://example.com/a/b;param", false},
		{"https://example.com/a/*", "https://example.com/a/b;p;q", true},
		{"https://example.com/a/*", "https://example.com/a/;p", false},
		{"https://example.com/a/***", "https://example.com/a/;p", true},
		{"http://example.com/a/b", "http://example.com/a/b;p?q#f", true},
		{"ftp://example.com/a/b", "ftp://example.com/a/b;type=i", true},
		// Only the last segment's parameters: the others are part of it.
		{"https://example.com/a/b", "https://example.com/a;x/b", false},
		{"https://example.com/a;x/b", "https://example.com/a;x/b", true},
		{"https://example.com/a;x/*", "https://example.com/a;x/b;y", true},
		// A pattern's own parameters are dropped the same way.
		{"https://example.com/a/b;x", "https://example.com/a/b", true},
		{"http*://example.com/a/b;x", "http://example.com/a/b;y", true},
		{"https://example.com/a/***;x", "https://example.com/a/b/c", true},
		// urlparse keeps them for file:// (not a scheme with parameters).
		{"file:///a/b", "file:///a/b;x", false},
		{"file:///a/b;x", "file:///a/b;x", true},
	}},
}

func TestMatches(t *testing.T) {
	for _, g := range matchGroups {
		t.Run(g.rule, func(t *testing.T) {
			for _, c := range g.cases {
				p, err := Parse(c.pattern)
				if err != nil {
					t.Fatalf("Parse(%q): %v", c.pattern, err)
				}
				u, err := ParseURL(c.url)
				if err != nil {
					t.Fatalf("ParseURL(%q): %v", c.url, err)
				}
				if got := p.Matches(u); got != c.want {
					t.Errorf("%q matches %q = %v, want %v", c.pattern, c.url, got, c.want)
				}
				// The index must agree with the direct check.
				ix, errs := Build([]Item[int]{{c.pattern, 1}})
				if len(errs) != 0 {
					t.Fatal(errs)
				}
				if got := len(ix.Match(u)) == 1; got != c.want {
					t.Errorf("index: %q matches %q = %v, want %v", c.pattern, c.url, got, c.want)
				}
			}
		})
	}
}

func TestMatchesNeedsConcreteURL(t *testing.T) {
	p := mustParse(t, "http*://***.a.com/***")
	for _, s := range []string{"http*://a.com/", "http://*.a.com/", "http://a.com/***"} {
		u := mustParse(t, s)
		if p.Matches(u) {
			t.Errorf("%v matched pattern-with-wildcards %q as a URL", p, s)
		}
	}
	if (Pattern{}).Matches(mustParseURL(t, "http://a.com/")) {
		t.Error("zero Pattern matched a URL")
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, s := range []string{
		"http*://***.a.com:/x//y/**/",
		"https://[::FFFF:1.2.3.4]:8443/a",
		"file:///",
		"ftp://u@Files.Example.ORG:2121/pub/***",
	} {
		p := mustParse(t, s)
		q := mustParse(t, p.String())
		if p.String() != q.String() {
			t.Errorf("%q → %q → %q", s, p, q)
		}
	}
}

func mustParse(t testing.TB, s string) Pattern {
	t.Helper()
	p, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParseURL(t testing.TB, s string) Pattern {
	t.Helper()
	u, err := ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
