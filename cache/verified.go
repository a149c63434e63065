package cache

import "sync"

// verifiedMax bounds each generation of a verifiedSet: two generations of
// 32 Ki digests are a few MiB, however many blobs the store holds.
const verifiedMax = 1 << 15

// verifiedSet remembers the blobs this process wrote or hashed, so they are
// not hashed again on every open; the most recently used of them, not all:
// a sync writes every blob of a large repository once, and remembering them
// all made memory grow with the store. A digest it has forgotten costs one
// more hash of its blob at its next open, never a wrong answer.
//
// It keeps two generations: a digest is added to the current one, and found
// in the previous one it moves to the current one; once the current one is
// full, it becomes the previous one and the previous one is dropped.
type verifiedSet struct {
	mu       sync.RWMutex
	cur, old map[digest]struct{}
}

func (v *verifiedSet) has(s string) bool {
	d := digestOf(s)
	if d == (digest{}) {
		return false
	}
	v.mu.RLock()
	_, inCur := v.cur[d]
	_, inOld := v.old[d]
	v.mu.RUnlock()
	if inOld && !inCur {
		v.mu.Lock()
		v.put(d)
		v.mu.Unlock()
	}
	return inCur || inOld
}

func (v *verifiedSet) add(s string) {
	d := digestOf(s)
	if d == (digest{}) {
		return
	}
	v.mu.Lock()
	v.put(d)
	v.mu.Unlock()
}

// put adds d to the current generation; v.mu must be held.
func (v *verifiedSet) put(d digest) {
	if v.cur == nil {
		v.cur = map[digest]struct{}{}
	}
	if _, ok := v.cur[d]; ok {
		return
	}
	if len(v.cur) >= verifiedMax {
		v.old, v.cur = v.cur, make(map[digest]struct{}, verifiedMax/4)
	}
	v.cur[d] = struct{}{}
}

func (v *verifiedSet) remove(s string) {
	d := digestOf(s)
	v.mu.Lock()
	delete(v.cur, d)
	delete(v.old, d)
	v.mu.Unlock()
}
