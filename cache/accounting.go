package cache

import (
	"encoding/hex"
	"hash/maphash"
)

// The size accounting keeps a little of every stored key (a large mirror
// holds about a million), so it keeps it compact (issue 17: memory that does
// not grow with what is stored beyond what is needed): digests as bytes, keys
// by a 128-bit hash, and a key's name and last use only for entries eviction
// may take. Pinned and hosted entries, all of a synced mirror, are never
// evicted and need neither.

// digest is a blob's sha256 as bytes: half the size of its hex, and nothing
// for the garbage collector to follow. The zero digest stands for "" (an
// entry that names no valid blob).
type digest [32]byte

// digestOf parses a lowercase hex sha256; anything else is the zero digest.
func digestOf(s string) digest {
	var d digest
	if !validDigest(s) {
		return d
	}
	hex.Decode(d[:], []byte(s))
	return d
}

// String is the digest's lowercase hex, or "" for the zero digest.
func (d digest) String() string {
	if d == (digest{}) {
		return ""
	}
	return hex.EncodeToString(d[:])
}

// keyID names a key in the accounting: two 64-bit hashes of it under seeds
// chosen at random when the cache opens. Two of a million keys share an ID
// with a chance of about 10^-26 (and no one outside the process can aim for
// it: the seeds are secret), far below that of a memory error, so the IDs
// stand for the keys, at 16 bytes each instead of the key itself.
type keyID struct{ a, b uint64 }

// keyHasher makes keyIDs.
type keyHasher struct{ s1, s2 maphash.Seed }

func newKeyHasher() keyHasher { return keyHasher{maphash.MakeSeed(), maphash.MakeSeed()} }

func (h keyHasher) id(key string) keyID {
	return keyID{maphash.String(h.s1, key), maphash.String(h.s2, key)}
}

func (h keyHasher) idBytes(key []byte) keyID {
	return keyID{maphash.Bytes(h.s1, key), maphash.Bytes(h.s2, key)}
}

// blobState counts the keys naming one blob.
type blobState struct {
	refs int32
	size int64
}
