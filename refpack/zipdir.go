package refpack

import (
	"bufio"
	"encoding/binary"
	"io"
)

// countDirectory counts the central-directory records archive/zip would load,
// stopping once there are more than maxEntries. archive/zip ignores the record
// count of the end record past its low 16 bits and reads records until one is
// bad, so the only sound bound is to walk them the way it does: this mirrors
// readDirectoryEnd and the record loop of Go's archive/zip (Go 1.26). When it
// cannot make sense of the zip it returns 0 and leaves the verdict to
// archive/zip, whose entry count is checked again afterwards.
func countDirectory(r io.ReaderAt, size int64, maxEntries int) int {
	const (
		endLen      = 22
		loc64Len    = 20
		end64Len    = 56
		dirHdrLen   = 46
		dirHdrSig   = 0x02014b50
		loc64Sig    = 0x07064b50
		end64Sig    = 0x06064b50
		maxInt64    = uint64(1<<63 - 1)
		searchShort = 1024
		searchLong  = 65 * 1024
	)
	if size < endLen {
		return 0
	}
	var buf []byte
	var endOff int64 = -1
	for i, n := range []int64{searchShort, searchLong} {
		n = min(n, size)
		buf = make([]byte, n)
		if _, err := r.ReadAt(buf, size-n); err != nil && err != io.EOF {
			return 0
		}
		if p := findEndSignature(buf); p >= 0 {
			buf = buf[p:]
			endOff = size - n + int64(p)
			break
		}
		if i == 1 || n == size {
			return 0
		}
	}
	if endOff < 0 {
		return 0
	}
	le := binary.LittleEndian
	records := uint64(le.Uint16(buf[10:]))
	dirSize := uint64(le.Uint32(buf[12:]))
	dirOff := uint64(le.Uint32(buf[16:]))
	if records == 0xffff || dirSize == 0xffff || dirOff == 0xffffffff {
		if endOff-loc64Len >= 0 {
			var loc [loc64Len]byte
			if _, err := r.ReadAt(loc[:], endOff-loc64Len); err != nil {
				return 0
			}
			if le.Uint32(loc[0:]) == loc64Sig && le.Uint32(loc[4:]) == 0 && le.Uint32(loc[16:]) == 1 {
				p := int64(le.Uint64(loc[8:]))
				var e [end64Len]byte
				if _, err := r.ReadAt(e[:], p); err != nil || le.Uint32(e[0:]) != end64Sig {
					return 0
				}
				endOff = p
				dirSize = le.Uint64(e[40:])
				dirOff = le.Uint64(e[48:])
			}
		}
	}
	if dirSize > maxInt64 || dirOff > maxInt64 {
		return 0
	}
	base := endOff - int64(dirSize) - int64(dirOff)
	if o := base + int64(dirOff); o < 0 || o >= size {
		return 0
	}
	var d []byte
	readHeader := func(br *bufio.Reader) bool {
		var h [dirHdrLen]byte
		if _, err := io.ReadFull(br, h[:]); err != nil || le.Uint32(h[:]) != dirHdrSig {
			return false
		}
		nameLen, extraLen, commentLen := int(le.Uint16(h[28:])), int(le.Uint16(h[30:])), int(le.Uint16(h[32:]))
		if n := nameLen + extraLen + commentLen; cap(d) < n {
			d = make([]byte, n)
		} else {
			d = d[:n]
		}
		if _, err := io.ReadFull(br, d); err != nil {
			return false
		}
		return zip64ExtraOK(d[nameLen:nameLen+extraLen],
			le.Uint32(h[24:]) == 0xffffffff, le.Uint32(h[20:]) == 0xffffffff, le.Uint32(h[42:]) == 0xffffffff)
	}
	if base > 0 {
		off := int64(dirOff)
		if readHeader(bufio.NewReader(io.NewSectionReader(r, off, size-off))) {
			base = 0
		}
	}
	start := base + int64(dirOff)
	br := bufio.NewReader(io.NewSectionReader(r, start, size-start))
	count := 0
	for count <= maxEntries && readHeader(br) {
		count++
	}
	return count
}

// findEndSignature is archive/zip's findSignatureInBlock: the last end-of-
// central-directory signature whose comment fits in b.
func findEndSignature(b []byte) int {
	const endLen = 22
	for i := len(b) - endLen; i >= 0; i-- {
		if b[i] == 'P' && b[i+1] == 'K' && b[i+2] == 0x05 && b[i+3] == 0x06 {
			n := int(b[i+endLen-2]) | int(b[i+endLen-1])<<8
			if n+endLen+i > len(b) {
				return -1
			}
			return i
		}
	}
	return -1
}

// zip64ExtraOK is the one check of archive/zip's readDirectoryHeader, after the
// fixed and variable parts are read, that makes it stop reading records: a zip64
// extra field too short for a size or offset that the record maxed out.
func zip64ExtraOK(extra []byte, needUSize, needCSize, needOffset bool) bool {
	le := binary.LittleEndian
	for len(extra) >= 4 {
		tag, size := le.Uint16(extra), int(le.Uint16(extra[2:]))
		extra = extra[4:]
		if len(extra) < size {
			break
		}
		field := extra[:size]
		extra = extra[size:]
		if tag != 0x0001 {
			continue
		}
		for _, need := range []*bool{&needUSize, &needCSize, &needOffset} {
			if *need {
				*need = false
				if len(field) < 8 {
					return false
				}
				field = field[8:]
			}
		}
	}
	return true
}
