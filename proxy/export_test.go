package proxy

// FastMemos reports what the fast lane remembers: how many targets, the bytes
// they hold, their budget, and whether target is one of them.
func (s *Server) FastMemos(target string) (n int, bytes, budget int64, has bool) {
	f := s.fast
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, has = f.memos[target]
	return len(f.memos), f.bytes, f.budget, has
}
