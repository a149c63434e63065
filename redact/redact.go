// Package redact hides the credentials of URLs wherever a URL is shown: an
// upstream given as http://user:password@host (a private upstream behind basic
// auth) or https://token@host is a secret like an API key (design.md, Hostile
// clients).
package redact

import (
	"regexp"
	"strings"
)

// userinfo is a URL's scheme and its user information up to the last "@" of
// the authority (a password may hold an unescaped "@"; "/", "?", "#" and
// white space end the authority, quotes end a URL quoted in a message).
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#@\s"'<>]*(?:@[^/?#@\s"'<>]*)*)@`)

// URL masks the credentials of every URL in s, a bare URL or a message that
// quotes some: "http://alice:pw@host" becomes "http://alice:***@host", and a
// user alone, which is a token ("https://t0ken@host"), becomes "https://***@host".
// It is the one function every answer, header, metric label, status page, log
// line and check-config line shows an upstream URL through.
func URL(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfo.FindStringSubmatch(m)
		scheme, info := sub[1], sub[2]
		if user, _, ok := strings.Cut(info, ":"); ok {
			return scheme + user + ":***@"
		}
		return scheme + "***@"
	})
}
