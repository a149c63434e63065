package refpack

import (
	"archive/zip"
	"bytes"
	"hash/crc32"
	"testing"
)

// zent is one entry for buildZip. With raw set, the entry is written with
// CreateRaw and header sizes as given, to make headers lie.
type zent struct {
	name   string
	body   []byte
	method uint16
	mode   uint32 // Unix mode bits in the external attributes, 0 for none
	raw    *zip.FileHeader
}

// buildZip writes entries in order. The refpack package cannot import
// registrytest (it imports refpack), so its tests have this small builder.
func buildZip(tb testing.TB, ents ...zent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		if e.raw != nil {
			w, err := zw.CreateRaw(e.raw)
			if err != nil {
				tb.Fatal(err)
			}
			if _, err := w.Write(e.body); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		h := &zip.FileHeader{Name: e.name, Method: e.method}
		if e.mode != 0 {
			h.CreatorVersion = 3 << 8 // Unix, so the mode bits are read back
			h.ExternalAttrs = e.mode << 16
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := w.Write(e.body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// deflated is a regular DEFLATE entry.
func deflated(name, body string) zent {
	return zent{name: name, body: []byte(body), method: zip.Deflate}
}

const (
	goodManifest = `{"id":"country-codes","version":"1.2.0","title":"Country Codes","idField":"","nameField":"","description":"","authors":[],"createdUtc":"20/05/2024 10:00","tags":["geo"],"license":""}`
	goodData     = `[{"code":"FR","name":"France"},{"code":"DE"}]`
	goodJWS      = "eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjF9.c2ln"
)

// validEntries is a minimal valid package in the real packer's order.
func validEntries() []zent {
	return []zent{
		deflated("data.json", goodData),
		deflated("data.meta.json", goodManifest),
		deflated("data.meta.json.jws", goodJWS),
	}
}

// with returns the valid entries with each named entry replaced (or added when
// absent) by the given one.
func with(extra ...zent) []zent {
	ents := validEntries()
	for _, x := range extra {
		replaced := false
		for i := range ents {
			if ents[i].name == x.name && x.raw == nil {
				ents[i], replaced = x, true
			}
		}
		if !replaced {
			ents = append(ents, x)
		}
	}
	return ents
}

// without returns the valid entries less the named ones.
func without(names ...string) []zent {
	var out []zent
next:
	for _, e := range validEntries() {
		for _, n := range names {
			if e.name == n {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// rawStored builds a stored entry whose header claims usize uncompressed bytes.
func rawStored(name string, body []byte, usize uint64) zent {
	return zent{raw: &zip.FileHeader{
		Name: name, Method: zip.Store, CRC32: crc32.ChecksumIEEE(body),
		CompressedSize64: uint64(len(body)), UncompressedSize64: usize,
	}, body: body}
}
