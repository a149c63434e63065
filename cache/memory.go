package cache

// Memory returns what the memory tier holds for key, without asking the store,
// and counts it as a use. It is how an answer prepared from a Hot earlier is
// checked before it is given again: the same *Hot means the same entry.
func (c *Cache) Memory(key string) (*Hot, bool) {
	if c.mem == nil {
		return nil, false
	}
	h, ok := c.mem.Get(key)
	if ok {
		c.touch(key)
	}
	return h, ok
}
