package refpack

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// maxJSONDepth bounds nesting in data.json; real datasets nest a few levels.
const maxJSONDepth = 1000

// jsonScanner checks JSON syntax (RFC 8259, as encoding/json accepts it) while
// streaming, keeping nothing but the read buffer: data.json may be as large as
// the uncompressed limit, and encoding/json would hold a whole element or string
// in memory, so one huge string could cost several times the limit.
type jsonScanner struct {
	r   *bufio.Reader
	off int64
}

// errSyntax reports where the syntax broke.
func (s *jsonScanner) errSyntax(what string) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", s.off, what)
}

// next returns the next byte; io.EOF at the end.
func (s *jsonScanner) next() (byte, error) {
	c, err := s.r.ReadByte()
	if err == nil {
		s.off++
	}
	return c, err
}

// unexpected turns a read error inside a value into a syntax error, keeping
// other read errors (limits, CRC) as they are.
func (s *jsonScanner) unexpected(err error, what string) error {
	if errors.Is(err, io.EOF) {
		return s.errSyntax("unexpected end in " + what)
	}
	return err
}

// skipSpace returns the first byte that is not JSON whitespace.
func (s *jsonScanner) skipSpace() (byte, error) {
	for {
		c, err := s.next()
		if err != nil {
			return 0, err
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c, nil
		}
	}
}

// value checks one value whose first byte c was already read.
func (s *jsonScanner) value(c byte, depth int) error {
	switch {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		return s.str()
	case c == '-' || '0' <= c && c <= '9':
		return s.number(c)
	case c == 't':
		return s.literal("rue")
	case c == 'f':
		return s.literal("alse")
	case c == 'n':
		return s.literal("ull")
	}
	return s.errSyntax(fmt.Sprintf("unexpected %q", c))
}

func (s *jsonScanner) literal(rest string) error {
	for i := 0; i < len(rest); i++ {
		c, err := s.next()
		if err != nil {
			return s.unexpected(err, "literal")
		}
		if c != rest[i] {
			return s.errSyntax("bad literal")
		}
	}
	return nil
}

func (s *jsonScanner) object(depth int) error {
	if depth > maxJSONDepth {
		return s.errSyntax("nested too deeply")
	}
	c, err := s.skipSpace()
	if err != nil {
		return s.unexpected(err, "object")
	}
	if c == '}' {
		return nil
	}
	for {
		if c != '"' {
			return s.errSyntax("object key is not a string")
		}
		if err := s.str(); err != nil {
			return err
		}
		if c, err = s.skipSpace(); err != nil {
			return s.unexpected(err, "object")
		}
		if c != ':' {
			return s.errSyntax("missing ':' after object key")
		}
		if c, err = s.skipSpace(); err != nil {
			return s.unexpected(err, "object")
		}
		if err := s.value(c, depth); err != nil {
			return err
		}
		if c, err = s.skipSpace(); err != nil {
			return s.unexpected(err, "object")
		}
		switch c {
		case '}':
			return nil
		case ',':
			if c, err = s.skipSpace(); err != nil {
				return s.unexpected(err, "object")
			}
		default:
			return s.errSyntax("missing ',' or '}' in object")
		}
	}
}

func (s *jsonScanner) array(depth int) error {
	if depth > maxJSONDepth {
		return s.errSyntax("nested too deeply")
	}
	c, err := s.skipSpace()
	if err != nil {
		return s.unexpected(err, "array")
	}
	if c == ']' {
		return nil
	}
	for {
		if err := s.value(c, depth); err != nil {
			return err
		}
		if c, err = s.skipSpace(); err != nil {
			return s.unexpected(err, "array")
		}
		switch c {
		case ']':
			return nil
		case ',':
			if c, err = s.skipSpace(); err != nil {
				return s.unexpected(err, "array")
			}
		default:
			return s.errSyntax("missing ',' or ']' in array")
		}
	}
}

// str checks a string after its opening quote. Like encoding/json it accepts
// invalid UTF-8 (which it would replace) but not raw control characters.
func (s *jsonScanner) str() error {
	for {
		c, err := s.next()
		if err != nil {
			return s.unexpected(err, "string")
		}
		switch {
		case c == '"':
			return nil
		case c < 0x20:
			return s.errSyntax("control character in string")
		case c == '\\':
			e, err := s.next()
			if err != nil {
				return s.unexpected(err, "string")
			}
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					h, err := s.next()
					if err != nil {
						return s.unexpected(err, "string")
					}
					if !isHex(h) {
						return s.errSyntax("bad \\u escape")
					}
				}
			default:
				return s.errSyntax("bad escape")
			}
		}
	}
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? with its first
// byte c already read; the byte after it is left unread.
func (s *jsonScanner) number(c byte) error {
	var err error
	if c == '-' {
		if c, err = s.next(); err != nil {
			return s.unexpected(err, "number")
		}
	}
	if !isDigit(c) {
		return s.errSyntax("bad number")
	}
	if c != '0' {
		s.digits()
	}
	if p, err := s.r.Peek(1); err == nil && p[0] == '.' {
		s.next()
		if s.digits() == 0 {
			return s.errSyntax("bad number fraction")
		}
	}
	if p, err := s.r.Peek(1); err == nil && (p[0] == 'e' || p[0] == 'E') {
		s.next()
		if p, err := s.r.Peek(1); err == nil && (p[0] == '+' || p[0] == '-') {
			s.next()
		}
		if s.digits() == 0 {
			return s.errSyntax("bad number exponent")
		}
	}
	return nil
}

// digits consumes digits and returns how many.
func (s *jsonScanner) digits() int {
	n := 0
	for {
		p, err := s.r.Peek(1)
		if err != nil || !isDigit(p[0]) {
			return n
		}
		s.next()
		n++
	}
}

// checkArrayOfObjects checks that r holds exactly one JSON array whose elements
// are all objects, with nothing after it but whitespace.
func checkArrayOfObjects(r io.Reader) error {
	s := &jsonScanner{r: bufio.NewReaderSize(r, 64<<10)}
	c, err := s.skipSpace()
	if err != nil {
		return s.unexpected(err, "document")
	}
	if c != '[' {
		return errNotArray
	}
	c, err = s.skipSpace()
	if err != nil {
		return s.unexpected(err, "array")
	}
	for i := 0; c != ']'; i++ {
		if c != '{' {
			if err := s.value(c, 1); err != nil {
				return err
			}
			return fmt.Errorf("element %d is not an object", i)
		}
		if err := s.object(2); err != nil {
			return err
		}
		if c, err = s.skipSpace(); err != nil {
			return s.unexpected(err, "array")
		}
		switch c {
		case ']':
		case ',':
			if c, err = s.skipSpace(); err != nil {
				return s.unexpected(err, "array")
			}
			if c == ']' {
				return s.errSyntax("trailing comma")
			}
		default:
			return s.errSyntax("missing ',' or ']' in array")
		}
	}
	if _, err := s.skipSpace(); err != io.EOF {
		if err != nil {
			return err
		}
		return errors.New("data after the JSON array")
	}
	return nil
}

// errNotArray is returned when the document is not an array at all.
var errNotArray = errors.New("not a JSON array")
