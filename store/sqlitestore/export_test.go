package sqlitestore

// Commits returns how many group-commit transactions s has committed.
func Commits(s *Store) int64 { return s.commits.Load() }
