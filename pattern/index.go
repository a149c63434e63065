package pattern

import "fmt"

// Item is one pattern to index together with the value a match yields
// (typically the mapping it came from).
type Item[V any] struct {
	Pattern string
	Value   V
}

// Index is an immutable trie of patterns, shaped like Hydrilla's pattern
// tree: keyed by scheme and port, then by reversed host labels, then by path
// segments, with the three wildcard kinds hanging off every node. A lookup
// costs a few map probes per URL label and segment, independent of how many
// patterns are indexed. Build it once and publish it (e.g. through an
// atomic.Pointer); it is safe for concurrent use because nothing mutates it.
type Index[V any] struct {
	// roots maps a (scheme, port) key to the root of its host trie.
	roots map[rootKey]uint32
	// edges holds every literal child of every node (host and path
	// nodes alike: node ids are unique across both). One flat map is far
	// cheaper to build and to keep than a map per node.
	edges map[edge]uint32
	// nodes[0] is unused so that 0 can mean "absent" in slots.
	nodes []node
	// Leaf l's values are vals[offsets[2l]:offsets[2l+1]] for patterns
	// with a trailing slash, then vals[offsets[2l+1]:offsets[2l+2]] for
	// the others, each in insertion order. Leaf 0 is unused.
	offsets []uint32
	vals    []V
	n       int
}

type rootKey struct {
	scheme schemeSet
	port   uint16
}

type edge struct {
	parent uint32
	label  string
}

// node is a trie node. In the host trie, slots point to the path-trie roots
// of patterns whose host ends at this node: slots[wildNone] for exactly
// these labels, slots[wildOne..wildAny] for "*.", "**." and "***." in front
// of them. In a path trie, slots point to leaves the same way.
type node struct {
	slots [numSlots]uint32
}

// Build indexes items. Items whose pattern does not parse are skipped and
// reported, one error (wrapping ErrInvalid) each; the index holds the rest.
func Build[V any](items []Item[V]) (*Index[V], []error) {
	b := NewBuilder[V](len(items))
	var errs []error
	for i, it := range items {
		if err := b.Add(it.Pattern, it.Value); err != nil {
			errs = append(errs, fmt.Errorf("item %d: %w", i, err))
		}
	}
	return b.Index(), errs
}

// Builder builds an Index one item at a time, for a caller that produces the
// items while the index is being built (Build is a Builder fed from a slice).
// Add order is the insertion order that breaks ties in Match. A Builder is
// not safe for concurrent use.
type Builder[V any] struct {
	ix      *Index[V]
	entries []buildEntry[V]
	nLeaves uint32
	// Reused across Add: the labels and segments of the pattern being added.
	host, path []string
	// The host walk of the last pattern added under each root: patterns
	// added one after another often share their host (those of one mapping
	// do), and the walk down it is most of the cost of adding one.
	lastHost []hostWalk
}

// hostWalk is a walk down a host trie: labels TLD first, and the node each
// label led to.
type hostWalk struct {
	root   uint32
	labels []string
	nodes  []uint32
}

type buildEntry[V any] struct {
	leaf  uint32
	slash bool
	value V
}

// NewBuilder returns an empty Builder; hint is the number of items expected
// (0 when unknown), which only sizes its tables.
func NewBuilder[V any](hint int) *Builder[V] {
	hint = max(hint, 0)
	return &Builder[V]{
		ix: &Index[V]{
			roots: make(map[rootKey]uint32),
			edges: make(map[edge]uint32, 2*hint),
			nodes: make([]node, 1, 2*hint+1),
		},
		entries: make([]buildEntry[V], 0, hint),
		nLeaves: 1,
	}
}

// Add indexes one item. A pattern that does not parse is skipped and its
// error (wrapping ErrInvalid) returned; the index holds the rest.
func (b *Builder[V]) Add(pattern string, v V) error {
	p, err := parse(pattern, true, &b.host, &b.path)
	if err != nil {
		return err
	}
	ix := b.ix
	ix.n++
	// http* is registered once per scheme, as Hydrilla does.
	for _, sc := range allSchemes {
		if p.schemes&sc == 0 {
			continue
		}
		key := rootKey{sc, p.port}
		n, ok := ix.roots[key]
		// fresh: n was made by this walk, so it has no children yet and
		// looking them up is wasted work.
		fresh := !ok
		if !ok {
			n = ix.newNode()
			ix.roots[key] = n
		}
		w := b.hostWalk(n)
		k := 0 // labels shared with the last walk under this root
		for k < len(w.labels) && k < len(p.host) && w.labels[k] == p.host[len(p.host)-1-k] {
			k++
		}
		if k > 0 {
			n, fresh = w.nodes[k-1], false
		}
		w.labels, w.nodes = w.labels[:k], w.nodes[:k]
		for j := len(p.host) - 1 - k; j >= 0; j-- {
			n, fresh = ix.child(n, p.host[j], fresh)
			w.labels, w.nodes = append(w.labels, p.host[j]), append(w.nodes, n)
		}
		n, fresh = ix.slot(n, p.hostWild, ix.newNode)
		for _, s := range p.path {
			n, fresh = ix.child(n, s, fresh)
		}
		leaf, _ := ix.slot(n, p.pathWild, func() uint32 { b.nLeaves++; return b.nLeaves - 1 })
		b.entries = append(b.entries, buildEntry[V]{leaf, p.slash, v})
	}
	return nil
}

// hostWalk returns the last walk under the root node root.
func (b *Builder[V]) hostWalk(root uint32) *hostWalk {
	for i := range b.lastHost {
		if b.lastHost[i].root == root {
			return &b.lastHost[i]
		}
	}
	b.lastHost = append(b.lastHost, hostWalk{root: root})
	return &b.lastHost[len(b.lastHost)-1]
}

// Index lays the values out and returns the index. The Builder must not be
// used afterwards.
func (b *Builder[V]) Index() *Index[V] {
	ix, entries := b.ix, b.entries
	b.ix, b.entries = nil, nil
	// Lay the values out leaf by leaf, slash bucket first, with a counting
	// sort: entries are in insertion order and the placement is stable.
	bucket := func(e *buildEntry[V]) uint32 {
		if e.slash {
			return 2 * e.leaf
		}
		return 2*e.leaf + 1
	}
	offsets := make([]uint32, 2*b.nLeaves+1)
	for i := range entries {
		offsets[bucket(&entries[i])+1]++
	}
	for i := 1; i < len(offsets); i++ {
		offsets[i] += offsets[i-1]
	}
	next := make([]uint32, len(offsets))
	copy(next, offsets)
	ix.vals = make([]V, len(entries))
	for i := range entries {
		bk := bucket(&entries[i])
		ix.vals[next[bk]] = entries[i].value
		next[bk]++
	}
	ix.offsets = offsets
	return ix
}

func (ix *Index[V]) newNode() uint32 {
	ix.nodes = append(ix.nodes, node{})
	return uint32(len(ix.nodes) - 1)
}

// child returns parent's child under label, creating it when absent; fresh
// says parent was just created (so it has no children to look up), and the
// result says whether the child was.
func (ix *Index[V]) child(parent uint32, label string, fresh bool) (uint32, bool) {
	k := edge{parent, label}
	if !fresh {
		if c, ok := ix.edges[k]; ok {
			return c, false
		}
	}
	c := ix.newNode()
	ix.edges[k] = c
	return c, true
}

// slot returns what slot w of node n points to, creating it with mk first
// (and then reporting true). It indexes ix.nodes afresh after mk, which may
// grow the slice.
func (ix *Index[V]) slot(n uint32, w wildcard, mk func() uint32) (uint32, bool) {
	if v := ix.nodes[n].slots[w]; v != 0 {
		return v, false
	}
	v := mk()
	ix.nodes[n].slots[w] = v
	return v, true
}

// Len returns the number of items indexed (those whose pattern parsed).
func (ix *Index[V]) Len() int {
	if ix == nil {
		return 0
	}
	return ix.n
}

// Match returns the values of all patterns matching u, most specific first,
// in Hydrilla's order: hosts from the deepest literal node up, at each node
// the exact host before "*", "**" and "***"; for each host, paths in the
// same way; at each path node, for a URL whose path ends in '/', patterns
// with a trailing slash before the others; ties in insertion order. A URL's
// leftmost label or last segment spelled like a wildcard reaches that
// wildcard as a literal would (see Matches), so its patterns come where an
// exact match one level deeper would. A value
// added under several matching patterns appears once per pattern (see
// Dedupe). u should come from ParseURL; a nil Index matches nothing.
func (ix *Index[V]) Match(u Pattern) []V {
	if ix == nil || !u.concrete() {
		return nil
	}
	root, ok := ix.roots[rootKey{u.schemes, u.port}]
	if !ok {
		return nil
	}
	// The walk down the literal labels; depth d has consumed d labels.
	var buf [16]uint32
	stack := append(buf[:0], root)
	for j := len(u.host) - 1; j >= 0; j-- {
		c, ok := ix.edges[edge{stack[len(stack)-1], u.host[j]}]
		if !ok {
			break
		}
		stack = append(stack, c)
	}
	var out []V
	n := len(u.host)
	// The leftmost label is the last one walked.
	reached, pr := ix.reachedWildcard(stack, u.host, 0)
	if pr != 0 {
		out = ix.matchPath(out, pr, u)
	}
	for d := len(stack) - 1; d >= 0; d-- {
		slots := &ix.nodes[stack[d]].slots
		for w := wildNone; w < numSlots; w++ {
			if pr := slots[w]; pr != 0 && w.admits(n-d) && (d != n-1 || w != reached) {
				out = ix.matchPath(out, pr, u)
			}
		}
	}
	return out
}

// reachedWildcard handles a URL whose last label or segment to walk
// (labels[last]) is spelled "*", "**" or "***". Hydrilla keys literals and
// wildcards in one table, so such a label walks into the wildcard's node as
// a literal would: what that wildcard slot holds then matches as the deepest
// node's exact match, ahead of everything else, and not again at its own
// node. It returns the wildcard and its slot when the walk got as far as the
// node holding it and the slot is used, else wildNone and 0.
func (ix *Index[V]) reachedWildcard(stack []uint32, labels []string, last int) (wildcard, uint32) {
	n := len(labels)
	if n == 0 || len(stack) < n {
		return wildNone, 0
	}
	w := wildcardOf(labels[last])
	if w == wildNone {
		return wildNone, 0
	}
	slot := ix.nodes[stack[n-1]].slots[w]
	if slot == 0 {
		return wildNone, 0
	}
	return w, slot
}

func (ix *Index[V]) matchPath(out []V, root uint32, u Pattern) []V {
	var buf [16]uint32
	stack := append(buf[:0], root)
	for _, s := range u.path {
		c, ok := ix.edges[edge{stack[len(stack)-1], s}]
		if !ok {
			break
		}
		stack = append(stack, c)
	}
	n := len(u.path)
	reached, leaf := ix.reachedWildcard(stack, u.path, n-1)
	if leaf != 0 {
		out = ix.appendLeaf(out, leaf, u.slash)
	}
	for d := len(stack) - 1; d >= 0; d-- {
		slots := &ix.nodes[stack[d]].slots
		for w := wildNone; w < numSlots; w++ {
			leaf := slots[w]
			if leaf == 0 || !w.admits(n-d) || (d == n-1 && w == reached) {
				continue
			}
			out = ix.appendLeaf(out, leaf, u.slash)
		}
	}
	return out
}

// appendLeaf appends the values of leaf: for a URL with a trailing slash,
// those of patterns with one first, then the others.
func (ix *Index[V]) appendLeaf(out []V, leaf uint32, slash bool) []V {
	if slash {
		out = append(out, ix.vals[ix.offsets[2*leaf]:ix.offsets[2*leaf+1]]...)
	}
	return append(out, ix.vals[ix.offsets[2*leaf+1]:ix.offsets[2*leaf+2]]...)
}

// Dedupe returns vs with repeated values removed, keeping each at its first
// (most specific) position, which is how /query lists each mapping once. It
// reuses vs's backing array.
func Dedupe[V comparable](vs []V) []V {
	if len(vs) < 2 {
		return vs
	}
	seen := make(map[V]struct{}, len(vs))
	out := vs[:0]
	for _, v := range vs {
		if _, dup := seen[v]; !dup {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}
