package hydrilla

// MaxIDLen bounds identifiers. Real ones are short; the bound exists because
// identifiers become file and cache-key names, and most filesystems refuse
// names over 255 bytes (with room left for a ".json" suffix).
const MaxIDLen = 200

// ValidID reports whether id is a Hydrilla item identifier the mirror may
// use: the real server's ^[-0-9a-z.]+$ (anything else is a 404 there), and
// not "." or "..", which would traverse when the identifier becomes a path
// segment of a cache key or an upstream URL. Identifiers cannot hold "/", so
// no other form can traverse.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ValidHex reports whether s is a sha256 as Hydrilla writes it: exactly 64
// lowercase hex digits. Uppercase is refused rather than folded because the
// upstream's /file/sha256/<hex> is a static file name and would not match.
func ValidHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
