package pgstore

// QueueLen returns how many Append calls wait for the group-commit writer.
func QueueLen(s *Store) int {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return len(s.w.queue)
}

// TopicRegexp exposes topicRegexp to tests.
var TopicRegexp = topicRegexp
