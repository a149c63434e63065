package proxy

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// AccessLog writes the one access line per request in the same text or JSON
// shape as the slog handlers, formatted by hand: it runs on every request,
// and slog's general-purpose formatting cost a fifth of a cached hit.
type AccessLog struct {
	w    io.Writer
	json bool
	mu   sync.Mutex
	bufs sync.Pool
}

// NewAccessLog writes access lines to w, as JSON objects when json is set.
func NewAccessLog(w io.Writer, json bool) *AccessLog {
	return &AccessLog{w: w, json: json, bufs: sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}}
}

// accessLine is what one access line reports.
type accessLine struct {
	id, method, path string
	query            string // without its '?'; kept apart so no line allocates to join them
	status           int
	bytes            int64
	duration         time.Duration
	cache, upstream  string
}

func (l *AccessLog) write(a *accessLine) {
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	now := time.Now().UTC()
	if l.json {
		b = append(b, `{"time":"`...)
		b = now.AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
		b = append(b, `","level":"INFO","msg":"request","id":`...)
		b = appendJSONString(b, a.id)
		b = append(b, `,"method":`...)
		b = appendJSONString(b, a.method)
		b = append(b, `,"path":"`...)
		b = appendJSONContent(b, a.path)
		if a.query != "" {
			b = append(b, '?')
			b = appendJSONContent(b, a.query)
		}
		b = append(b, '"')
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(a.status), 10)
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, a.bytes, 10)
		b = append(b, `,"duration":`...)
		b = strconv.AppendInt(b, int64(a.duration), 10)
		b = append(b, `,"cache":`...)
		b = appendJSONString(b, a.cache)
		b = append(b, `,"upstream":`...)
		b = appendJSONString(b, a.upstream)
		b = append(b, "}\n"...)
	} else {
		b = append(b, "time="...)
		b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, " level=INFO msg=request id="...)
		b = appendTextValue(b, a.id)
		b = append(b, " method="...)
		b = appendTextValue(b, a.method)
		b = append(b, " path="...)
		b = appendTextPath(b, a.path, a.query)
		b = append(b, " status="...)
		b = strconv.AppendInt(b, int64(a.status), 10)
		b = append(b, " bytes="...)
		b = strconv.AppendInt(b, a.bytes, 10)
		b = append(b, " duration="...)
		b = append(b, a.duration.String()...)
		b = append(b, " cache="...)
		b = appendTextValue(b, a.cache)
		b = append(b, " upstream="...)
		b = appendTextValue(b, a.upstream)
		b = append(b, '\n')
	}
	l.mu.Lock()
	l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	l.bufs.Put(bp)
}

// appendTextValue quotes s as slog's text handler does when it must (empty,
// spaces, '=', quotes, control or non-UTF-8 bytes), so a hostile path cannot
// forge fields or lines.
func appendTextValue(b []byte, s string) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '=' || c == '"' || c == 0x7f || c >= utf8.RuneSelf {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}

// appendTextPath is appendTextValue of path + "?" + query (or path alone
// when query is empty), without joining them.
func appendTextPath(b []byte, path, query string) []byte {
	if query == "" {
		return appendTextValue(b, path)
	}
	// A query has '=' nearly always, so the value is quoted. Printable ASCII
	// without quotes or backslashes quotes as itself: the common case, kept
	// off strconv's rune-by-rune path.
	if plainASCII(path) && plainASCII(query) {
		b = append(b, '"')
		b = append(b, path...)
		b = append(b, '?')
		b = append(b, query...)
		return append(b, '"')
	}
	// Else piece by piece (a quoted string is its runes quoted one by one).
	b = strconv.AppendQuote(b, path)
	b = append(b[:len(b)-1], '?')
	q := len(b)
	b = strconv.AppendQuote(b, query)
	return append(b[:q], b[q+1:]...)
}

// plainASCII reports whether s is printable ASCII without '"' or '\\'.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendJSONString writes s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	return append(appendJSONContent(b, s), '"')
}

// appendJSONContent is appendJSONString without the quotes.
func appendJSONContent(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < ' ' || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}
