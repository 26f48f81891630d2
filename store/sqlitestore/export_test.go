package sqlitestore

// Commits returns how many group-commit transactions s has committed.
func Commits(s *Store) int64 { return s.commits.Load() }

// Redos returns how many optimistic group commits s redid carefully.
func Redos(s *Store) int64 { return s.redos.Load() }

// CarefulCommits is how many commits after a redo look up their IDs first.
const CarefulCommits = carefulCommits

// Queued returns how many Appends wait in s's queue, not counting the one
// the writer holds.
func Queued(s *Store) int { return len(s.queue) }

var DecodeCursor = decodeCursor

// SetMinScan lowers the number of positions a filtered Read looks at least.
func SetMinScan(s *Store, n int) { s.minScan = n }

// SetAfterTake makes the writer of s call f each time it has taken
// requests into a transaction. Call it before the first Append.
func SetAfterTake(s *Store, f func()) { s.afterTake = f }

// ThisHost returns what s writes in the host column of its group members.
func ThisHost() string { return thisHost }
