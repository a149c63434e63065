package catalogue

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
)

// Decoding the Meta records at start-up. A large store's start-up is mostly
// this: at 100,000 mappings, 365,707 records, each a few strings, a version
// and a list of patterns, nearly all of which the catalogue keeps. The
// records are what MetaOf wrote (encoding/json, one line, fields in order),
// so a scanner that knows that shape reads them several times faster than a
// general decoder, and copies what it keeps of a whole batch into one string
// instead of allocating every string and version on its own. Anything it does
// not expect (an escape, a space, a field it does not know, a number it would
// have to interpret) sends that record to go-json, so both read every record
// alike (FuzzDecodeMeta). At 100,000 mappings this, the patterns parsed on
// the decoding workers and the index built on one shard per core take
// start-up from about 1.4 to 1.1 CPU seconds (BENCHMARKS.md).

// span is [from, to) of one of batchDecoder's lists.
type span struct{ from, to int32 }

// pendingItem is one record as the scanner saw it, before its batch's kept
// strings are made one string. Its strings are indices in views.
type pendingItem struct {
	general               *liteMeta // decoded by go-json instead, when set
	upstream              string
	revision              int
	key                   int32
	typ, id, longName     int32 // -1: absent
	version               span  // of versions
	patterns              span  // of views
	hasVersion, isMapping bool
}

// batchDecoder is what decoding one batch needs; the workers reuse them
// (decoders), so a large store's start-up does not make garbage in
// proportion to it.
type batchDecoder struct {
	views    [][]byte // the strings kept: views of the records until finish
	versions []int
	pending  []pendingItem
	offsets  []int
}

var decoders = sync.Pool{New: func() any { return new(batchDecoder) }}

// decodeMetas decodes one batch of Meta records: the item versions it holds
// (records without an identifier are skipped), with their keys, in order;
// withPatterns, the mappings' patterns parsed for the index too.
func decodeMetas(batch []cache.MetaRecord, withPatterns bool) (*loadedBatch, error) {
	d := decoders.Get().(*batchDecoder)
	defer d.release()
	var up []byte
	var upStr string
	for _, r := range batch {
		if up == nil || string(r.Upstream) != string(up) {
			up, upStr = r.Upstream, string(r.Upstream)
		}
		p := pendingItem{upstream: upStr}
		nViews, nVersions := len(d.views), len(d.versions)
		if !d.scan(r.Meta, &p) {
			d.views, d.versions = d.views[:nViews], d.versions[:nVersions]
			var m liteMeta
			if err := gojson.Unmarshal(r.Meta, &m); err != nil {
				return nil, err
			}
			p = pendingItem{upstream: upStr, general: &m, isMapping: m.Type == hydrilla.TypeMapping}
		}
		p.key = d.view(r.Key)
		d.pending = append(d.pending, p)
	}
	return d.finish(withPatterns), nil
}

// release readies d for another batch and pools it.
func (d *batchDecoder) release() {
	clear(d.views) // views of the store's memory, which the walk moves on from
	d.views, d.versions, d.pending, d.offsets = d.views[:0], d.versions[:0], d.pending[:0], d.offsets[:0]
	decoders.Put(d)
}

// view adds b to the kept strings.
func (d *batchDecoder) view(b []byte) int32 {
	d.views = append(d.views, b)
	return int32(len(d.views) - 1)
}

// finish copies the batch's kept strings into one string, which the items
// then point into, and its versions into one slice.
func (d *batchDecoder) finish(withPatterns bool) *loadedBatch {
	var b strings.Builder
	size := 0
	for _, v := range d.views {
		size += len(v)
	}
	b.Grow(size)
	d.offsets = append(d.offsets, 0)
	for _, v := range d.views {
		b.Write(v)
		d.offsets = append(d.offsets, b.Len())
	}
	kept := b.String()
	str := func(i int32) string {
		if i < 0 {
			return ""
		}
		return kept[d.offsets[i]:d.offsets[i+1]]
	}
	// Exactly sized: the items keep them.
	versions := slices.Clone(d.versions)
	nPatterns, nMappings := 0, 0
	for i := range d.pending {
		nPatterns += int(d.pending[i].patterns.to - d.pending[i].patterns.from)
		if d.pending[i].isMapping {
			nMappings++
		}
	}
	patterns := make([]string, 0, nPatterns)
	for i := range d.pending {
		p := &d.pending[i]
		for j := p.patterns.from; j < p.patterns.to; j++ {
			patterns = append(patterns, str(j))
		}
		n := int32(len(patterns))
		p.patterns = span{n - (p.patterns.to - p.patterns.from), n}
	}
	n := len(d.pending)
	lb := &loadedBatch{keys: make([]string, 0, n), items: make([]heldItem, 0, n), mappings: make([]mappingVal, 0, nMappings)}
	if withPatterns {
		lb.parsed = parsedPool.Get().(*parsedPatterns)
	}
	for i := range d.pending {
		p := &d.pending[i]
		var m liteMeta
		if p.general != nil {
			m = *p.general
		} else {
			m = liteMeta{Type: str(p.typ), Identifier: str(p.id), LongName: str(p.longName), Revision: p.revision}
			if p.hasVersion {
				m.Version = hydrilla.Version(versions[p.version.from:p.version.to:p.version.to])
			}
			if p.patterns.to > p.patterns.from {
				m.Patterns = patterns[p.patterns.from:p.patterns.to:p.patterns.to]
			}
		}
		if m.Identifier == "" {
			continue
		}
		lb.keys = append(lb.keys, str(p.key))
		lb.items = append(lb.items, heldItem{meta: m, upstream: p.upstream})
		if m.Type == hydrilla.TypeMapping {
			if withPatterns {
				lb.parsed.add(m.Patterns, len(lb.mappings))
			}
			lb.mappings = append(lb.mappings, mappingVal{id: m.Identifier, longName: m.LongName, version: m.Version})
		}
	}
	return lb
}

// parsedPatterns are the patterns of a batch's mappings, parsed for the index
// on the worker that decoded the batch: parsing is a third of the work of
// adding a pattern, and the index build is the longest part of start-up.
// They are pooled (parsedPool) once every shard of the build has added them.
type parsedPatterns struct {
	list   []batchPattern
	parser pattern.Parser
	left   atomic.Int32 // shards yet to add them
}

// batchPattern is a parsed pattern of lb.mappings[mapping].
type batchPattern struct {
	p       pattern.Pattern
	mapping int
}

var parsedPool = sync.Pool{New: func() any { return new(parsedPatterns) }}

// add parses the patterns of the mapping-th mapping; those that do not parse
// are left out, as in Rebuild.
func (pp *parsedPatterns) add(patterns []string, mapping int) {
	for _, s := range patterns {
		if p, err := pp.parser.Parse(s); err == nil {
			pp.list = append(pp.list, batchPattern{p, mapping})
		}
	}
}

// done is called by each shard once it has added the patterns; the last
// one pools them.
func (pp *parsedPatterns) done() {
	if pp.left.Add(-1) == 0 {
		clear(pp.list)
		pp.list = pp.list[:0]
		pp.parser.Reset()
		parsedPool.Put(pp)
	}
}

// The fields scan knows, as bits of what it has seen.
const (
	seenType = 1 << iota
	seenIdentifier
	seenLongName
	seenVersion
	seenRevision
	seenPatterns
	seenFiles
)

// scan reads a record of the shape MetaOf writes into p, keeping its strings
// in d. It reports false for anything else, having perhaps kept some.
func (d *batchDecoder) scan(b []byte, p *pendingItem) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' || !plainText(b) {
		return false
	}
	p.typ, p.id, p.longName = -1, -1, -1
	seen := 0
	for i := 1; ; {
		key, ok := plainString(b, &i)
		if !ok || i >= len(b) || b[i] != ':' {
			return false
		}
		i++
		var bit int
		switch string(key) {
		case "type":
			bit = seenType
			p.typ, ok = d.keepString(b, &i)
			p.isMapping = ok && string(d.views[p.typ]) == hydrilla.TypeMapping
		case "identifier":
			bit = seenIdentifier
			p.id, ok = d.keepString(b, &i)
		case "long_name":
			bit = seenLongName
			p.longName, ok = d.keepString(b, &i)
		case "version":
			bit = seenVersion
			p.version, ok = d.scanVersion(b, &i)
			p.hasVersion = true
		case "revision":
			bit = seenRevision
			p.revision, ok = scanInt(b, &i)
		case "patterns":
			bit = seenPatterns
			from := len(d.views)
			ok = scanStrings(b, &i, func(s []byte) { d.view(s) })
			p.patterns = span{int32(from), int32(len(d.views))}
		case "files":
			bit = seenFiles
			ok = scanStrings(b, &i, func([]byte) {})
		default:
			return false
		}
		if !ok || seen&bit != 0 || i >= len(b) {
			return false
		}
		seen |= bit
		switch b[i] {
		case ',':
			i++
		case '}':
			return i == len(b)-1
		default:
			return false
		}
	}
}

// plainText reports whether b has no backslash, no control character (so
// no whitespace) and is valid UTF-8: then every JSON string in it is its
// bytes between the quotes, and the scanner need not look at them one by
// one. Eight bytes at a time: the records are a few hundred bytes, mostly
// hex digests.
func plainText(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	var high uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		high |= x
		// A byte below 0x20, or equal to '\\' (x^0x5c is then zero), sets
		// its high bit here; bytes of 0x80 and above are judged below.
		y := x ^ 0x5c*ones
		if ((x-0x20*ones)|(y-ones))&^x&highs != 0 {
			return false
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '\\' {
			return false
		}
		high |= uint64(b[i])
	}
	return high&highs == 0 || utf8.Valid(b)
}

// plainString reads the JSON string at b[*i] of a record that is plainText.
func plainString(b []byte, i *int) ([]byte, bool) {
	j := *i
	if j >= len(b) || b[j] != '"' {
		return nil, false
	}
	n := bytes.IndexByte(b[j+1:], '"')
	if n < 0 {
		return nil, false
	}
	*i = j + 1 + n + 1
	return b[j+1 : j+1+n], true
}

// keepString is plainString, kept.
func (d *batchDecoder) keepString(b []byte, i *int) (int32, bool) {
	s, ok := plainString(b, i)
	if !ok {
		return 0, false
	}
	return d.view(s), true
}

// scanStrings reads a JSON array of plain strings, calling fn with each.
func scanStrings(b []byte, i *int, fn func([]byte)) bool {
	j := *i
	if j >= len(b) || b[j] != '[' {
		return false
	}
	j++
	if j < len(b) && b[j] == ']' {
		*i = j + 1
		return true
	}
	for {
		s, ok := plainString(b, &j)
		if !ok || j >= len(b) {
			return false
		}
		fn(s)
		switch b[j] {
		case ',':
			j++
		case ']':
			*i = j + 1
			return true
		default:
			return false
		}
	}
}

// scanDigits reads the digits at b[*i]: at least one, no leading zero, at
// most max.
func scanDigits(b []byte, i *int, max int) (int, bool) {
	j, n := *i, 0
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		if j-*i == max {
			return 0, false
		}
		n = n*10 + int(b[j]-'0')
	}
	if j == *i || (b[*i] == '0' && j-*i > 1) {
		return 0, false
	}
	*i = j
	return n, true
}

// scanInt reads a JSON integer of up to 18 digits.
func scanInt(b []byte, i *int) (int, bool) {
	j, neg := *i, false
	if j < len(b) && b[j] == '-' {
		j, neg = j+1, true
	}
	n, ok := scanDigits(b, &j, 18)
	if !ok {
		return 0, false
	}
	*i = j
	if neg {
		return -n, true
	}
	return n, true
}

// scanVersion reads a version as hydrilla.Version's UnmarshalJSON would:
// numbers of up to 16 digits and MaxVersionNumber, normalised. Anything its
// general path would judge (too many parts, a number out of range, all
// zeros) is left to it.
func (d *batchDecoder) scanVersion(b []byte, i *int) (span, bool) {
	j := *i
	if j >= len(b) || b[j] != '[' {
		return span{}, false
	}
	j++
	from := len(d.versions)
	for {
		n, ok := scanDigits(b, &j, 16)
		if !ok || n > hydrilla.MaxVersionNumber || len(d.versions)-from == hydrilla.MaxVersionParts || j >= len(b) {
			return span{}, false
		}
		d.versions = append(d.versions, n)
		if b[j] == ']' {
			break
		}
		if b[j] != ',' {
			return span{}, false
		}
		j++
	}
	to := len(d.versions)
	for to > from && d.versions[to-1] == 0 {
		to--
	}
	if to == from {
		return span{}, false
	}
	d.versions = d.versions[:to]
	*i = j + 1
	return span{int32(from), int32(to)}, true
}
