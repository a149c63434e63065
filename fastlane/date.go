package fastlane

import (
	"net/http"
	"sync/atomic"
	"time"
)

// stamp is one second's Date header value.
type stamp struct {
	sec int64
	b   []byte
}

var date atomic.Pointer[stamp]

// AppendDate appends now as an HTTP date (the Date header's value, as net/http
// writes it), formatting it once a second rather than on every answer.
func AppendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	if d := date.Load(); d != nil && d.sec == sec {
		return append(b, d.b...)
	}
	d := &stamp{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	date.Store(d)
	return append(b, d.b...)
}
