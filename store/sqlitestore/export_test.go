package sqlitestore

// Commits returns how many group-commit transactions s has committed.
func Commits(s *Store) int64 { return s.commits.Load() }

// Queued returns how many Appends wait in s's queue, not counting the one
// the writer holds.
func Queued(s *Store) int { return len(s.queue) }

var DecodeCursor = decodeCursor

// SetMinScan lowers the number of positions a filtered Read looks at least.
func SetMinScan(s *Store, n int) { s.minScan = n }
