package hydrilla

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Limits on versions. Real versions are dates or short dotted numbers; the
// limits keep hostile input from costing memory or overflowing, and keep every
// component exact in JavaScript (Haketilo's browser side), whose numbers stop
// being integers past 2^53.
const (
	MaxVersionParts  = 32
	MaxVersionNumber = 1<<53 - 1
	maxVersionString = 512
)

// ErrBadVersion is wrapped by every version parsing error.
var ErrBadVersion = errors.New("invalid version")

// Version is a Hydrilla item version: a list of non-negative integers
// compared element by element, trailing zeros ignored ([1, 0] == [1]).
// Values returned by this package are normalised (no trailing zeros, at least
// one element); String and Compare also accept unnormalised values.
type Version []int

// ParseVersion parses the dotted form used in paths, "2021.11.10", and
// normalises it, so "2.0" gives [2]. It accepts what the real server's
// int()-based parser accepts for well-formed input (leading zeros included)
// and refuses empty parts, signs, non-digits, an all-zero version (it has no
// path form: it would live at ".../<id>/") and anything past the limits.
// Whether s was canonical is s == v.String(); the real server answers 404 for
// non-canonical paths.
func ParseVersion(s string) (Version, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadVersion)
	}
	if len(s) > maxVersionString {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadVersion, maxVersionString)
	}
	parts := strings.Split(s, ".")
	if len(parts) > MaxVersionParts {
		return nil, fmt.Errorf("%w: more than %d parts", ErrBadVersion, MaxVersionParts)
	}
	v := make(Version, len(parts))
	for i, p := range parts {
		n, err := parseVersionNumber(p)
		if err != nil {
			return nil, fmt.Errorf("%w %q: part %d: %v", ErrBadVersion, s, i+1, err)
		}
		v[i] = n
	}
	return v.finish()
}

// ParseVersionRevision parses the seed document's "?ver=" form, version and
// optional resource revision: "2021.11.2-2" gives [2021 11 2] and 2. Without
// a "-" the revision is 0, which no real resource has (revisions start at 1),
// so callers can tell "none given" apart.
func ParseVersionRevision(s string) (Version, int, error) {
	verPart, revPart, hasRev := strings.Cut(s, "-")
	v, err := ParseVersion(verPart)
	if err != nil {
		return nil, 0, err
	}
	if !hasRev {
		return v, 0, nil
	}
	rev, err := parseVersionNumber(revPart)
	if err != nil {
		return nil, 0, fmt.Errorf("%w %q: revision: %v", ErrBadVersion, s, err)
	}
	if rev == 0 {
		return nil, 0, fmt.Errorf("%w %q: revision 0", ErrBadVersion, s)
	}
	return v, rev, nil
}

// parseVersionNumber parses one decimal component: digits only, because
// strconv.Atoi would also take a sign.
func parseVersionNumber(p string) (int, error) {
	if p == "" {
		return 0, errors.New("empty")
	}
	// Skip leading zeros before counting digits, so "000…01" stays cheap
	// and legal while the digit limit still bounds the value.
	digits := strings.TrimLeft(p, "0")
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, fmt.Errorf("not a digit: %q", p[i])
		}
	}
	if digits == "" {
		return 0, nil
	}
	if len(digits) > 16 {
		return 0, errors.New("number too large")
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n > MaxVersionNumber {
		return 0, errors.New("number too large")
	}
	return n, nil
}

// finish normalises v and refuses the all-zero version.
func (v Version) finish() (Version, error) {
	n := v.Normalize()
	if len(n) == 0 {
		return nil, fmt.Errorf("%w: all parts are zero", ErrBadVersion)
	}
	return n, nil
}

// Normalize returns v without trailing zeros. It shares v's backing array.
func (v Version) Normalize() Version {
	n := len(v)
	for n > 0 && v[n-1] == 0 {
		n--
	}
	return v[:n]
}

// String returns the dotted path form with trailing zeros stripped
// ([2, 0] → "2"), the name the real server stores the version under.
func (v Version) String() string {
	n := v.Normalize()
	var b strings.Builder
	for i, x := range n {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(x))
	}
	return b.String()
}

// Compare returns -1, 0 or +1 as v sorts before, equal to or after o,
// comparing element by element with missing elements taken as zero, which is
// the same as comparing the normalised lists as the real server does.
func (v Version) Compare(o Version) int {
	for i := 0; i < len(v) || i < len(o); i++ {
		var a, b int
		if i < len(v) {
			a = v[i]
		}
		if i < len(o) {
			b = o[i]
		}
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
	}
	return 0
}

// MarshalJSON writes v as a JSON array of integers, [] for an empty v rather
// than null.
func (v Version) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 4+len(v)*6)
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(x), 10)
	}
	return append(b, ']'), nil
}

// UnmarshalJSON reads a JSON array of non-negative integer literals and
// normalises it. Fractions, exponents and signs are refused: a version the
// mirror cannot turn into a path exactly is not one it can serve.
func (v *Version) UnmarshalJSON(data []byte) error {
	n, ok := fastVersion(data)
	if !ok {
		var err error
		if n, err = decodeVersion(data); err != nil {
			return err
		}
	}
	*v = n
	return nil
}

// decodeVersion is UnmarshalJSON's general path: through the JSON decoder.
func decodeVersion(data []byte) (Version, error) {
	// RawMessage rather than json.Number: Number would also take "1", a
	// string, which the real schema does not allow.
	var nums []json.RawMessage
	if err := json.Unmarshal(data, &nums); err != nil {
		return nil, fmt.Errorf("%w: not a JSON array of numbers", ErrBadVersion)
	}
	if len(nums) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadVersion)
	}
	if len(nums) > MaxVersionParts {
		return nil, fmt.Errorf("%w: more than %d parts", ErrBadVersion, MaxVersionParts)
	}
	out := make(Version, len(nums))
	for i, num := range nums {
		n, err := parseVersionNumber(string(bytes.TrimSpace(num)))
		if err != nil {
			return nil, fmt.Errorf("%w: part %d: %v", ErrBadVersion, i+1, err)
		}
		out[i] = n
	}
	return out.finish()
}

// fastVersion decodes the common form of a version, a JSON array of plain
// non-negative integers ("[2022, 3, 1]"), without the JSON decoder: a
// serve's start-up decodes hundreds of thousands of them, and the decoder
// was half of that decoding. It answers ok only where UnmarshalJSON's general
// path gives the same version; anything else (an error to report, a form it
// does not know) is left to that path.
func fastVersion(data []byte) (Version, bool) {
	data = bytes.Trim(data, " \t\r\n")
	if len(data) < 3 || data[0] != '[' || data[len(data)-1] != ']' {
		return nil, false
	}
	var buf [MaxVersionParts]int
	n := 0
	for part := range bytes.SplitSeq(data[1:len(data)-1], []byte{','}) {
		part = bytes.Trim(part, " \t\r\n")
		// JSON has no leading zeros: "01" is the general path's error.
		if len(part) == 0 || n == MaxVersionParts || (len(part) > 1 && part[0] == '0') {
			return nil, false
		}
		num, err := parseVersionNumber(string(part))
		if err != nil {
			return nil, false
		}
		buf[n] = num
		n++
	}
	out, err := Version(buf[:n]).finish()
	if err != nil {
		return nil, false
	}
	return slices.Clone(out), true
}
