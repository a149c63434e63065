package refpack

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode/utf8"
)

// ErrInvalidPackage is wrapped by every error ValidateZip returns; the message
// around it says what is wrong.
var ErrInvalidPackage = errors.New("invalid RefPack package")

// Names of the entries of a .refpack.zip.
const (
	FileMeta      = "data.meta.json"
	FileJWS       = "data.meta.json.jws"
	FileData      = "data.json"
	FileSchema    = "data.schema.json"
	FileChangelog = "data.changelog.json"
	FileReadme    = "data.readme.md"
	// AssetsDir is the prefix of the only folder a package may have.
	AssetsDir = "assets/"
)

// Limits bound what ValidateZip accepts, against zip bombs and oversized input.
// The same limits apply to uploads and to zips fetched from an upstream. A zero
// or negative field takes its DefaultLimits value, so the zero Limits is safe.
type Limits struct {
	// MaxEntries is the most entries (files and directories) a zip may have.
	MaxEntries int
	// MaxTotalUncompressed bounds the sum of the entries' uncompressed sizes, as
	// declared in the headers and as actually read.
	MaxTotalUncompressed int64
	// MaxRatio bounds uncompressed/compressed size of each entry larger than
	// 1 MiB (smaller entries cannot hurt, and tiny JSON files compress oddly).
	MaxRatio float64
	// MaxUploadBytes bounds the size of the zip itself.
	MaxUploadBytes int64
}

// DefaultLimits returns limits far above any real dataset package but low enough
// that a hostile zip cannot exhaust memory or disk: 10,000 entries (real packages
// have a handful plus assets), 1 GiB uncompressed, a ratio of 200 (JSON data
// compresses 5–20×; DEFLATE's maximum is about 1032×, which only crafted input
// reaches), and 256 MiB of zip.
func DefaultLimits() Limits {
	return Limits{
		MaxEntries:           10000,
		MaxTotalUncompressed: 1 << 30,
		MaxRatio:             200,
		MaxUploadBytes:       256 << 20,
	}
}

// withDefaults fills unset fields.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxTotalUncompressed <= 0 {
		l.MaxTotalUncompressed = d.MaxTotalUncompressed
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = d.MaxRatio
	}
	if l.MaxUploadBytes <= 0 {
		l.MaxUploadBytes = d.MaxUploadBytes
	}
	return l
}

// ratioMinBytes: entries up to this size skip the ratio check.
const ratioMinBytes = 1 << 20

// maxDocBytes bounds the JSON documents that are decoded whole (manifest, schema,
// changelog) so that decoding cannot take many times MaxTotalUncompressed of
// memory; data.json is streamed instead and has no such bound.
const maxDocBytes = 16 << 20

// Manifest is what the mirror reads from data.meta.json. Only ID and Version are
// checked; the other fields are taken when they have the expected JSON type and
// left empty otherwise, because the upstream is the judge of them.
type Manifest struct {
	ID          string
	Version     string
	Title       string
	Description string
	Tags        []string
	CreatedUtc  string
	// Raw is the whole manifest object; numbers are json.Number.
	Raw map[string]any
}

// Matches checks that the manifest is the one asked for: its id is the name part
// of registryID ("vendor/country-codes" holds "country-codes"; a one-segment id
// must equal it) and its version is exactly version. Errors wrap ErrInvalidPackage.
func (m *Manifest) Matches(registryID, version string) error {
	name := registryID
	if _, n, ok := strings.Cut(registryID, "/"); ok {
		name = n
	}
	if m.ID != name {
		return fmt.Errorf("%w: manifest id %q does not match package %q", ErrInvalidPackage, truncate(m.ID, 80), registryID)
	}
	if m.Version != version {
		return fmt.Errorf("%w: manifest version %q does not match requested version %q", ErrInvalidPackage, truncate(m.Version, 80), version)
	}
	return nil
}

// invalid builds an ErrInvalidPackage error.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidPackage, fmt.Sprintf(format, args...))
}

// ValidateZip checks a .refpack.zip against the layout rules and limits of
// refpack.md and returns its manifest. Every entry is decompressed (checking its
// CRC and the size limits while reading), data.json must be a JSON array of
// objects, and the optional schema and changelog must have their documented shape.
// Errors wrap ErrInvalidPackage.
func ValidateZip(r io.ReaderAt, size int64, lim Limits) (*Manifest, error) {
	lim = lim.withDefaults()
	if size < 0 {
		return nil, invalid("negative size")
	}
	if size > lim.MaxUploadBytes {
		return nil, invalid("zip is %d bytes, over the limit of %d", size, lim.MaxUploadBytes)
	}
	zr, err := openZip(r, size, lim.MaxEntries)
	if err != nil {
		return nil, err
	}
	if err := checkLayout(zr.File, lim); err != nil {
		return nil, err
	}
	budget := &budget{left: lim.MaxTotalUncompressed}
	var man *Manifest
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		var err error
		switch f.Name {
		case FileMeta:
			man, err = checkEntry(f, budget, checkManifest)
		case FileData:
			_, err = checkEntry(f, budget, checkData)
		case FileSchema:
			_, err = checkEntry(f, budget, checkSchema)
		case FileChangelog:
			_, err = checkEntry(f, budget, checkChangelog)
		default:
			// The JWS is opaque and the readme and assets are free-form: reading
			// them still proves they decompress to what the headers say.
			_, err = checkEntry(f, budget, func(r io.Reader) (*Manifest, error) {
				_, err := io.Copy(io.Discard, r)
				return nil, err
			})
		}
		if err != nil {
			return nil, err
		}
	}
	return man, nil
}

// openZip opens a zip after counting its central directory, because
// archive/zip keeps every directory record in memory (about four times its size)
// before any limit could be applied.
func openZip(r io.ReaderAt, size int64, maxEntries int) (*zip.Reader, error) {
	if n := countDirectory(r, size, maxEntries); n > maxEntries {
		return nil, invalid("more than %d entries", maxEntries)
	}
	zr, err := zip.NewReader(r, size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		// ErrInsecurePath (GODEBUG=zipinsecurepath=0) comes with a usable
		// reader; the name checks then refuse the zip with a precise message.
		return nil, invalid("not a readable zip: %v", err)
	}
	if len(zr.File) > maxEntries {
		return nil, invalid("%d entries, over the limit of %d", len(zr.File), maxEntries)
	}
	return zr, nil
}

// checkLayout applies the name, layout, method and header-size rules.
func checkLayout(entries []*zip.File, lim Limits) error {
	seen := make(map[string]bool, len(entries))
	var total uint64
	for _, f := range entries {
		name := f.Name
		if err := checkName(name); err != nil {
			return err
		}
		if seen[name] {
			return invalid("entry %q appears twice", name)
		}
		seen[name] = true
		if strings.HasSuffix(name, "/") {
			// Only assets/ may exist as a directory; real packages omit it.
			if name != AssetsDir {
				return invalid("directory %q is not allowed (only %s, without sub-folders)", name, AssetsDir)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(name, AssetsDir); ok {
			if rest == "" || strings.Contains(rest, "/") {
				return invalid("entry %q is below a sub-folder of %s", name, AssetsDir)
			}
		} else {
			switch name {
			case FileMeta, FileJWS, FileData, FileSchema, FileChangelog, FileReadme:
			default:
				return invalid("entry %q is not allowed at the root", name)
			}
		}
		if m := f.Mode(); !m.IsRegular() {
			// Links and devices could reach outside whatever extracts the zip.
			return invalid("entry %q is not a regular file (%v)", name, m.Type())
		}
		if f.Flags&0x1 != 0 {
			return invalid("entry %q is encrypted", name)
		}
		if f.Method != zip.Store && f.Method != zip.Deflate {
			return invalid("entry %q uses compression method %d (only stored and DEFLATE)", name, f.Method)
		}
		u := f.UncompressedSize64
		if u > uint64(lim.MaxTotalUncompressed) || total+u > uint64(lim.MaxTotalUncompressed) {
			return invalid("uncompressed size over the limit of %d bytes (at entry %q)", lim.MaxTotalUncompressed, name)
		}
		total += u
		if u > ratioMinBytes {
			if f.CompressedSize64 == 0 || float64(u)/float64(f.CompressedSize64) > lim.MaxRatio {
				return invalid("entry %q compression ratio %d/%d is over the limit of %g", name, u, f.CompressedSize64, lim.MaxRatio)
			}
		}
	}
	for _, req := range []string{FileMeta, FileJWS, FileData} {
		if !seen[req] {
			return invalid("required entry %q is missing", req)
		}
	}
	return nil
}

// checkName refuses the names that are unsafe wherever the zip is extracted.
func checkName(name string) error {
	switch {
	case name == "":
		return invalid("entry with an empty name")
	case !utf8.ValidString(name):
		return invalid("entry name %q is not UTF-8", name)
	case strings.ContainsRune(name, 0):
		return invalid("entry name %q contains NUL", name)
	case strings.Contains(name, `\`):
		return invalid("entry name %q contains a backslash", name)
	case strings.HasPrefix(name, "/"):
		return invalid("entry name %q is absolute", name)
	case len(name) >= 2 && name[1] == ':' && isASCIILetter(name[0]):
		return invalid("entry name %q starts with a drive letter", name)
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == ".." {
			return invalid("entry name %q has a .. segment", name)
		}
	}
	return nil
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// budget is the uncompressed bytes still allowed across all entries.
type budget struct{ left int64 }

// limitedEntry reads one entry and fails as soon as it yields more than its
// header declared or than the shared budget allows, so a lying header cannot
// make the reader produce more than the limits (archive/zip checks the
// declared size too; this does not depend on it).
type limitedEntry struct {
	r        io.Reader
	name     string
	declared int64
	read     int64
	b        *budget
}

// Read counts what the entry yields against its header and the budget.
func (l *limitedEntry) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	l.b.left -= int64(n)
	if l.read > l.declared {
		return n, invalid("entry %q holds more than its declared %d bytes", l.name, l.declared)
	}
	if l.b.left < 0 {
		return n, invalid("uncompressed size over the limit (while reading %q)", l.name)
	}
	return n, err
}

// checkEntry opens f and runs check on its content, then reads to the end so
// that the CRC is verified even when check stopped early.
func checkEntry(f *zip.File, b *budget, check func(io.Reader) (*Manifest, error)) (*Manifest, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, invalid("entry %q: %v", f.Name, err)
	}
	defer rc.Close()
	le := &limitedEntry{r: rc, name: f.Name, declared: int64(f.UncompressedSize64), b: b}
	m, err := check(le)
	if err == nil {
		_, err = io.Copy(io.Discard, le)
	}
	if err != nil {
		if errors.Is(err, ErrInvalidPackage) {
			return nil, err
		}
		return nil, invalid("entry %q: %v", f.Name, err)
	}
	return m, nil
}

// jsonReader skips a UTF-8 byte order mark, which some editors write and JSON
// parsers commonly tolerate.
func jsonReader(r io.Reader) io.Reader {
	br := bufio.NewReader(r)
	if p, err := br.Peek(3); err == nil && bytes.Equal(p, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	return br
}

// readDoc reads a document that is decoded whole, bounded by maxDocBytes.
func readDoc(r io.Reader, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(jsonReader(r), maxDocBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDocBytes {
		return nil, invalid("%s is larger than %d bytes", name, maxDocBytes)
	}
	return b, nil
}

// decodeOne decodes exactly one JSON value from b into v.
func decodeOne(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func checkManifest(r io.Reader) (*Manifest, error) {
	b, err := readDoc(r, FileMeta)
	if err != nil {
		return nil, err
	}
	return ParseManifest(b)
}

// ParseManifest parses data.meta.json: a JSON object whose id and version are
// strings. Errors wrap ErrInvalidPackage.
func ParseManifest(b []byte) (*Manifest, error) {
	var raw map[string]any
	if err := decodeOne(b, &raw); err != nil || raw == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, invalid("%s is not a JSON object: %v", FileMeta, err)
	}
	m := &Manifest{Raw: raw}
	var ok bool
	if m.ID, ok = raw["id"].(string); !ok {
		return nil, invalid("%s: \"id\" is missing or not a string", FileMeta)
	}
	if m.Version, ok = raw["version"].(string); !ok {
		return nil, invalid("%s: \"version\" is missing or not a string", FileMeta)
	}
	m.Title, _ = raw["title"].(string)
	m.Description, _ = raw["description"].(string)
	m.CreatedUtc, _ = raw["createdUtc"].(string)
	if tags, ok := raw["tags"].([]any); ok {
		for _, t := range tags {
			if s, ok := t.(string); ok {
				m.Tags = append(m.Tags, s)
			}
		}
	}
	return m, nil
}

// checkData checks data.json while streaming it, so memory stays bounded
// however large the file or any one value in it is.
func checkData(r io.Reader) (*Manifest, error) {
	if err := checkArrayOfObjects(jsonReader(r)); err != nil {
		if errors.Is(err, ErrInvalidPackage) {
			return nil, err
		}
		return nil, invalid("%s: %v", FileData, err)
	}
	return nil, nil
}

func checkSchema(r io.Reader) (*Manifest, error) {
	b, err := readDoc(r, FileSchema)
	if err != nil {
		return nil, err
	}
	var s map[string]any
	if err := decodeOne(b, &s); err != nil || s == nil {
		return nil, invalid("%s is not a JSON object: %v", FileSchema, err)
	}
	if t, _ := s["type"].(string); t != "array" {
		return nil, invalid("%s: root \"type\" is not \"array\"", FileSchema)
	}
	return nil, nil
}

func checkChangelog(r io.Reader) (*Manifest, error) {
	b, err := readDoc(r, FileChangelog)
	if err != nil {
		return nil, err
	}
	var entries []map[string]any
	if err := decodeOne(b, &entries); err != nil || entries == nil {
		return nil, invalid("%s is not a JSON array of objects: %v", FileChangelog, err)
	}
	for i, e := range entries {
		for _, k := range []string{"version", "date", "description"} {
			if s, _ := e[k].(string); s == "" {
				return nil, invalid("%s entry %d: %q is missing, empty or not a string", FileChangelog, i, k)
			}
		}
	}
	return nil, nil
}

// FileName returns the zip entry a versioned document route serves: "data" →
// "data.json", "schema" → "data.schema.json", "changelog" →
// "data.changelog.json", "readme" → "data.readme.md", "meta" → "data.meta.json";
// "" for anything else.
func FileName(sub string) string {
	switch sub {
	case SubData:
		return FileData
	case SubSchema:
		return FileSchema
	case SubChangelog:
		return FileChangelog
	case SubReadme:
		return FileReadme
	case SubMeta:
		return FileMeta
	}
	return ""
}

// DocContentType returns the Content-Type of a document route answered from a
// zip: Markdown for the readme, JSON for the others, "" for anything else.
func DocContentType(sub string) string {
	switch sub {
	case SubReadme:
		return ContentTypeMarkdown
	case SubData, SubSchema, SubChangelog, SubMeta:
		return ContentTypeJSON
	}
	return ""
}

// ReadZipFile returns the content of the entry called name. It is meant for zips
// that passed ValidateZip; DefaultLimits still bound it so a stray call on an
// unchecked zip cannot exhaust memory. A missing entry is fs.ErrNotExist.
func ReadZipFile(r io.ReaderAt, size int64, name string) ([]byte, error) {
	lim := DefaultLimits()
	zr, err := openZip(r, size, lim.MaxEntries)
	if err != nil {
		return nil, err
	}
	for _, f := range zr.File {
		if f.Name != name {
			continue
		}
		if f.UncompressedSize64 > uint64(lim.MaxTotalUncompressed) {
			return nil, invalid("entry %q is over the limit of %d bytes", name, lim.MaxTotalUncompressed)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		defer rc.Close()
		le := &limitedEntry{r: rc, name: name, declared: int64(f.UncompressedSize64), b: &budget{left: lim.MaxTotalUncompressed}}
		b, err := io.ReadAll(le)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}
