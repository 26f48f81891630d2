package pgstore

// QueueLen returns how many Append calls wait for the group-commit writer.
func QueueLen(s *Store) int {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return len(s.w.queue)
}

// TopicRegexp exposes topicRegexp to tests.
var TopicRegexp = topicRegexp

// SetMinScan lowers the number of rows a filtered Read scans at least.
func SetMinScan(s *Store, n int) { s.minScan = n }

// Inflight is how many group commits run at once.
const Inflight = inflight
