package fastlane

import "bytes"

// parseHead reads the request head at the start of buf. When it is a complete,
// well-formed "GET <origin-form target> HTTP/1.1" head with exactly one Host
// and nothing that changes the answer or the framing (a body, conditions, a
// range, an upgrade, "Connection: close" …), it returns the head's length and
// the target. Otherwise it returns 0: the request is net/http's, which answers
// it, errors included, as it always does.
//
// Every head it accepts is one net/http accepts too (FuzzParseHead checks this
// against http.ReadRequest).
func parseHead(buf []byte) (n int, target []byte) {
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return 0, nil
	}
	head := buf[:end+2] // each line with its CRLF
	line, rest, ok := cutLine(head)
	if !ok {
		return 0, nil
	}
	t, ok := bytes.CutPrefix(line, []byte("GET "))
	if !ok {
		return 0, nil
	}
	if t, ok = bytes.CutSuffix(t, []byte(" HTTP/1.1")); !ok || len(t) == 0 || t[0] != '/' {
		return 0, nil
	}
	for i, b := range t {
		if b <= ' ' || b >= 0x7f || b == '#' || b == '%' && (i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2])) {
			return 0, nil
		}
	}
	hosts := 0
	for len(rest) > 0 {
		line, rest, ok = cutLine(rest)
		if !ok {
			return 0, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, nil
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		for _, b := range name {
			if !isToken[b] {
				return 0, nil
			}
		}
		for _, b := range value {
			if b < ' ' && b != '\t' || b == 0x7f {
				return 0, nil
			}
		}
		switch {
		case equalFold(name, "host"):
			if len(value) == 0 {
				return 0, nil
			}
			for _, b := range value {
				if !isHostByte(b) {
					return 0, nil
				}
			}
			hosts++
		case equalFold(name, "connection"):
			if !equalFold(value, "keep-alive") {
				return 0, nil
			}
		case equalFold(name, "content-length"), equalFold(name, "transfer-encoding"),
			equalFold(name, "expect"), equalFold(name, "upgrade"), equalFold(name, "range"),
			equalFold(name, "te"), equalFold(name, "trailer"),
			len(name) > 3 && equalFold(name[:3], "if-"):
			return 0, nil
		}
	}
	if hosts != 1 {
		return 0, nil
	}
	return end + 4, t
}

var crlfcrlf = []byte("\r\n\r\n")

// cutLine cuts the first CRLF-ended line off b. A bare LF, a CR inside the
// line and an obsolete folded line (starting with space or tab) are refused.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line, rest = b[:i-1], b[i+1:]
	if bytes.IndexByte(line, '\r') >= 0 || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return nil, nil, false
	}
	return line, rest, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold is ASCII case-insensitive equality of b and a lower-case s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// isToken holds the bytes of an RFC 9110 token (a header name).
var isToken = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isHostByte is a strict subset of what net/http takes in a Host header: a
// name, an IPv4 or a bracketed IPv6 address, and a port.
func isHostByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '-' || b == '.' || b == ':' || b == '[' || b == ']'
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}
