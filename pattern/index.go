package pattern

import (
	"fmt"
	"math/bits"
	"sync"
)

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
	// parts hold the nodes and leaves: one part for an index built on one
	// goroutine; for one built by Shards, the roots in part 0 and each
	// shard's subtrees in a part of its own. A node or leaf id says which
	// part it is in (id>>shift) and where (id&mask).
	parts []part[V]
	shift uint
	mask  uint32
	n     int
}

// part is one piece of an Index, made by one Builder.
type part[V any] struct {
	// edges holds every literal child of every node of the part (host and
	// path nodes alike: node ids are unique across both). One flat map is
	// far cheaper to build and to keep than a map per node.
	edges map[edge]uint32
	// nodes[0] is unused so that 0 can mean "absent" in slots.
	nodes []node
	// Leaf l's values are vals[offsets[2l]:offsets[2l+1]] for patterns
	// with a trailing slash, then vals[offsets[2l+1]:offsets[2l+2]] for
	// the others, each in insertion order. Leaf 0 is unused.
	offsets []uint32
	vals    []V
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

// node returns node id.
func (ix *Index[V]) node(id uint32) *node {
	return &ix.parts[id>>ix.shift].nodes[id&ix.mask]
}

// child returns the literal child of node parent under label.
func (ix *Index[V]) child(parent uint32, label string) (uint32, bool) {
	c, ok := ix.parts[parent>>ix.shift].edges[edge{parent, label}]
	return c, ok
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
	roots   map[rootKey]uint32
	p       *part[V]
	n       int
	entries []buildEntry[V]
	nLeaves uint32
	// Node and leaf ids are tag|local, local < limit (see Index.parts).
	tag, limit uint32
	// A shard of Shards adds only what falls to it (see owns); shards is
	// 0 for a Builder of its own.
	shard, shards uint32
	// topEdges are the children this shard made under its roots, for
	// Shards.Index to hang under the shared roots.
	topEdges []topEdge
	// Reused across Add: the labels and segments of the pattern being added.
	host, path []string
	// The host walk of the last pattern added under each root and
	// top-level label: patterns added one after another often share their
	// host (those of one mapping do), or the top of it (a domain many sites
	// are under), and the walk down it is most of the cost of adding one.
	lastHost map[walkKey]*hostWalk
}

type walkKey struct {
	root uint32
	tld  string
}

// topEdge is a child a shard made under one of its roots.
type topEdge struct {
	root  rootKey
	label string
	child uint32
}

// hostWalk is a walk down a host trie: labels TLD first, and the node each
// label led to.
type hostWalk struct {
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
	return newBuilder[V](hint, hint, 0, ^uint32(0))
}

// newBuilder is NewBuilder for a shard: its edges table is made for
// edgesHint items.
func newBuilder[V any](hint, edgesHint int, tag, limit uint32) *Builder[V] {
	hint, edgesHint = max(hint, 0), max(edgesHint, 0)
	return &Builder[V]{
		roots: make(map[rootKey]uint32),
		p: &part[V]{
			edges: make(map[edge]uint32, 2*edgesHint),
			nodes: make([]node, 1, 2*hint+1),
		},
		entries: make([]buildEntry[V], 0, hint),
		nLeaves: 1,
		tag:     tag,
		limit:   limit,
	}
}

// Add indexes one item. A pattern that does not parse is skipped and its
// error (wrapping ErrInvalid) returned; the index holds the rest.
func (b *Builder[V]) Add(pattern string, v V) error {
	p, err := parse(pattern, true, &b.host, &b.path)
	if err != nil {
		return err
	}
	b.AddParsed(p, v)
	return nil
}

// AddParsed is Add for a pattern parsed already (by Parse or a Parser): the
// parsing, about a third of the work, can then be done on other goroutines.
func (b *Builder[V]) AddParsed(p Pattern, v V) {
	b.n++
	// http* is registered once per scheme, as Hydrilla does.
	for _, sc := range allSchemes {
		if p.schemes&sc == 0 {
			continue
		}
		key := rootKey{sc, p.port}
		if b.shards != 0 && !b.owns(key, &p) {
			continue
		}
		n, ok := b.roots[key]
		// fresh: n was made by this walk, so it has no children yet and
		// looking them up is wasted work.
		fresh := !ok
		if !ok {
			n = b.newNode()
			b.roots[key] = n
		}
		w := b.hostWalk(n, p.host)
		k := 0 // labels shared with the last walk under this root
		for k < len(w.labels) && k < len(p.host) && w.labels[k] == p.host[len(p.host)-1-k] {
			k++
		}
		if k > 0 {
			n, fresh = w.nodes[k-1], false
		}
		w.labels, w.nodes = w.labels[:k], w.nodes[:k]
		for j := len(p.host) - 1 - k; j >= 0; j-- {
			var made bool
			n, made = b.child(n, p.host[j], fresh)
			if made && j == len(p.host)-1 && b.shards != 0 {
				b.topEdges = append(b.topEdges, topEdge{key, p.host[j], n})
			}
			fresh = made
			w.labels, w.nodes = append(w.labels, p.host[j]), append(w.nodes, n)
		}
		n, fresh = b.slot(n, p.hostWild, b.newNode)
		for _, s := range p.path {
			n, fresh = b.child(n, s, fresh)
		}
		leaf, _ := b.slot(n, p.pathWild, b.newLeaf)
		b.entries = append(b.entries, buildEntry[V]{leaf, p.slash, v})
	}
}

// hostWalk returns the last walk under the root node root that began with
// host's top-level label (the last of host).
func (b *Builder[V]) hostWalk(root uint32, host []string) *hostWalk {
	k := walkKey{root: root}
	if len(host) > 0 {
		k.tld = host[len(host)-1]
	}
	w, ok := b.lastHost[k]
	if !ok {
		if b.lastHost == nil {
			b.lastHost = make(map[walkKey]*hostWalk)
		}
		w = &hostWalk{}
		b.lastHost[k] = w
	}
	return w
}

// Index lays the values out and returns the index. The Builder must not be
// used afterwards.
func (b *Builder[V]) Index() *Index[V] {
	b.layout()
	return &Index[V]{roots: b.roots, parts: []part[V]{*b.p}, shift: 32, mask: ^uint32(0), n: b.n}
}

// layout lays the values out leaf by leaf, slash bucket first, with a
// counting sort: entries are in insertion order and the placement is stable.
func (b *Builder[V]) layout() {
	p, entries := b.p, b.entries
	b.entries = nil
	bucket := func(e *buildEntry[V]) uint32 {
		l := e.leaf - b.tag
		if e.slash {
			return 2 * l
		}
		return 2*l + 1
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
	p.vals = make([]V, len(entries))
	for i := range entries {
		bk := bucket(&entries[i])
		p.vals[next[bk]] = entries[i].value
		next[bk]++
	}
	p.offsets = offsets
}

func (b *Builder[V]) newNode() uint32 {
	local := uint32(len(b.p.nodes))
	if local >= b.limit {
		panic("pattern: too many nodes for one index shard")
	}
	b.p.nodes = append(b.p.nodes, node{})
	return b.tag | local
}

func (b *Builder[V]) newLeaf() uint32 {
	if b.nLeaves >= b.limit {
		panic("pattern: too many leaves for one index shard")
	}
	b.nLeaves++
	return b.tag | (b.nLeaves - 1)
}

// child returns parent's child under label, creating it when absent; fresh
// says parent was just created (so it has no children to look up), and the
// result says whether the child was.
func (b *Builder[V]) child(parent uint32, label string, fresh bool) (uint32, bool) {
	k := edge{parent, label}
	if !fresh {
		if c, ok := b.p.edges[k]; ok {
			return c, false
		}
	}
	c := b.newNode()
	b.p.edges[k] = c
	return c, true
}

// slot returns what slot w of node n points to, creating it with mk first
// (and then reporting true). It indexes the nodes afresh after mk, which
// may grow the slice.
func (b *Builder[V]) slot(n uint32, w wildcard, mk func() uint32) (uint32, bool) {
	local := n - b.tag
	if v := b.p.nodes[local].slots[w]; v != 0 {
		return v, false
	}
	v := mk()
	b.p.nodes[local].slots[w] = v
	return v, true
}

// Shards builds one Index on several goroutines at once. Every shard is given
// every item, in the same order, by a goroutine of its own, and indexes only
// the subtrees that fall to it: under each (scheme, port) root, those of the
// top-level labels (TLDs) and wildcards that hash to it. Each subtree is
// thus built by one shard, from its items in the order they were added, so
// the index answers exactly as one built by a single Builder from the same
// items in the same order would.
type Shards[V any] struct {
	shards []*Builder[V]
	shift  uint
}

// NewShards returns n shards (at least one) of a build of about hint items.
func NewShards[V any](n, hint int) *Shards[V] {
	n = max(n, 1)
	// Part 0 holds the shared roots, part i+1 shard i.
	shift := uint(32 - bits.Len(uint(n)))
	s := &Shards[V]{shift: shift}
	for i := range n {
		// How the items fall to the shards depends on them: each shard's
		// slices are made for all of them, which costs nothing until used
		// (the memory is the system's until then), rather than grown
		// (which costs copies); a table is filled as it is made, so the
		// edges table is made for a shard's share.
		b := newBuilder[V](hint, hint/n, uint32(i+1)<<shift, uint32(1)<<shift)
		b.shard, b.shards = uint32(i), uint32(n)
		s.shards = append(s.shards, b)
	}
	return s
}

// Shard returns the Builder of shard i (0 <= i < n). Each must be given
// every item (Add or AddParsed), in the same order as every other.
func (s *Shards[V]) Shard(i int) *Builder[V] { return s.shards[i] }

// Index lays the values out and returns the index, once every shard has been
// given every item. The shards must not be used afterwards.
func (s *Shards[V]) Index() *Index[V] {
	var wg sync.WaitGroup
	for _, b := range s.shards {
		wg.Go(b.layout)
	}
	wg.Wait()
	top := newBuilder[V](0, 0, 0, uint32(1)<<s.shift)
	ix := &Index[V]{roots: top.roots, shift: s.shift, mask: uint32(1)<<s.shift - 1, n: s.shards[0].n}
	ix.parts = make([]part[V], 1, 1+len(s.shards))
	root := func(key rootKey) uint32 {
		r, ok := top.roots[key]
		if !ok {
			r = top.newNode()
			top.roots[key] = r
		}
		return r
	}
	for _, b := range s.shards {
		ix.parts = append(ix.parts, *b.p)
		// A root's slots hold the path tries of hosts that are a wildcard
		// alone (or of file://): each slot is filled by one shard at most.
		for key, r := range b.roots {
			t := &top.p.nodes[root(key)&ix.mask]
			for w, v := range b.p.nodes[r-b.tag].slots {
				if v != 0 {
					t.slots[w] = v
				}
			}
		}
		for _, e := range b.topEdges {
			top.p.edges[edge{root(e.root), e.label}] = e.child
		}
	}
	ix.parts[0] = *top.p
	return ix
}

// owns reports whether the subtree that pattern p's walk under root key goes
// down falls to this shard: the one of its top-level label, or of its host
// wildcard when that is all its host is.
func (b *Builder[V]) owns(key rootKey, p *Pattern) bool {
	h := uint32(key.scheme)<<16 | uint32(key.port)
	if len(p.host) > 0 {
		tld := p.host[len(p.host)-1]
		h = h*16777619 ^ uint32(len(tld))
		for i := 0; i < len(tld); i++ {
			h = (h ^ uint32(tld[i])) * 16777619
		}
	} else {
		h = h*16777619 ^ uint32(p.hostWild) ^ 0x9e3779b9
	}
	h ^= h >> 15
	return h%b.shards == b.shard
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
		c, ok := ix.child(stack[len(stack)-1], u.host[j])
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
		slots := &ix.node(stack[d]).slots
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
	slot := ix.node(stack[n-1]).slots[w]
	if slot == 0 {
		return wildNone, 0
	}
	return w, slot
}

func (ix *Index[V]) matchPath(out []V, root uint32, u Pattern) []V {
	var buf [16]uint32
	stack := append(buf[:0], root)
	for _, s := range u.path {
		c, ok := ix.child(stack[len(stack)-1], s)
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
		slots := &ix.node(stack[d]).slots
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
	p, l := &ix.parts[leaf>>ix.shift], leaf&ix.mask
	if slash {
		out = append(out, p.vals[p.offsets[2*l]:p.offsets[2*l+1]]...)
	}
	return append(out, p.vals[p.offsets[2*l+1]:p.offsets[2*l+2]]...)
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
