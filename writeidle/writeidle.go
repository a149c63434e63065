// Package writeidle disconnects clients that stop reading: every write to a
// connection must make progress within an idle timeout, and each write moves
// that deadline, so a slow but moving download is never cut while a client
// that accepts no byte for the timeout is (design.md, Hostile clients).
//
// Without it a client that pipelines requests and never reads holds its
// connection, and the goroutine writing to it, for ever: net/http sets no
// write deadline unless WriteTimeout caps the whole answer, which would cut
// large downloads.
package writeidle

import (
	"io"
	"net"
	"sync"
	"time"
)

// Listener wraps ln so that each connection it accepts closes its writes
// (they fail with a timeout) when one makes no progress for idle. idle <= 0
// returns ln unchanged.
func Listener(ln net.Listener, idle time.Duration) net.Listener {
	if idle <= 0 {
		return ln
	}
	return &listener{Listener: ln, idle: idle}
}

type listener struct {
	net.Listener
	idle time.Duration
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, idle: l.idle, slack: min(time.Second, l.idle/4)}, nil
}

// Conn is a connection whose writes must each make progress within idle. A
// write deadline its user sets (net/http's WriteTimeout, a shutdown's grace)
// still applies: the earlier of the two ends a write.
type Conn struct {
	net.Conn
	idle  time.Duration
	slack time.Duration // how stale the deadline may get before it is moved

	mu       sync.Mutex
	explicit time.Time // the user's write deadline; zero: none
	armed    time.Time // the deadline on the connection now
}

// sendChunk is the most a single sendfile or splice may carry before the
// deadline moves: a download slower than sendChunk per idle timeout is cut.
// (Progress shows only when the kernel takes more bytes, which it does once
// about a third of its send buffer has drained: with Linux's largest, 4 MiB,
// that is some 20 KiB/s at the default 60 s.)
const sendChunk = 64 << 10

func (c *Conn) arm() {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	want := now.Add(c.idle)
	if !c.explicit.IsZero() && c.explicit.Before(want) {
		want = c.explicit
	} else if !c.armed.IsZero() && c.armed.Sub(now) >= c.idle-c.slack {
		return // fresh enough: moving it costs a timer update per write
	}
	if !want.Equal(c.armed) {
		c.armed = want
		c.Conn.SetWriteDeadline(want)
	}
}

// Write writes p, which must make progress within the idle timeout.
func (c *Conn) Write(p []byte) (int, error) {
	c.arm()
	return c.Conn.Write(p)
}

// SetWriteDeadline sets the user's deadline; the idle one still applies.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.explicit = t
	want := time.Now().Add(c.idle)
	if !t.IsZero() && t.Before(want) {
		want = t
	}
	c.armed = want
	return c.Conn.SetWriteDeadline(want)
}

// SetDeadline sets the read deadline and the user's write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// ReadFrom keeps sendfile and splice (net/http sends files through its
// connection's ReadFrom) while moving the deadline every sendChunk bytes: one
// sendfile of a whole 2 GB zip would otherwise need to finish within idle.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{c}, r)
	}
	// The kernel's copy sees through one *io.LimitedReader to the file under
	// it; a chunk must be that, over the file itself.
	src, limit := r, int64(-1)
	lr, limited := r.(*io.LimitedReader)
	if limited {
		src, limit = lr.R, lr.N
	}
	var total int64
	for limit != 0 {
		n := int64(sendChunk)
		if limit > 0 {
			n = min(n, limit)
		}
		c.arm()
		w, err := rf.ReadFrom(&io.LimitedReader{R: src, N: n})
		total += w
		if limited {
			limit -= w
			lr.N = limit
		}
		if err != nil || w < n {
			return total, err // err, or the source ended
		}
	}
	return total, nil
}

// CloseWrite lets net/http half-close after an error answer, as it does on a
// TCP connection.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// writerOnly hides ReadFrom from io.Copy, which would call it again.
type writerOnly struct{ io.Writer }
