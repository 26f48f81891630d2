package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"modernc.org/sqlite"

	"github.com/ncore-io/event/store"
)

// checkFile fails with store.ErrUnavailable once the file at the store's
// path is no longer the file that Open opened: deleted, or replaced by
// another (a restored backup, say). SQLite's connections keep writing to
// the file they opened, so without it appends would go on succeeding into
// a file that nobody can open any more. It costs one stat.
func (s *Store) checkFile() error {
	fi, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: the database file %s was deleted after Open", store.ErrUnavailable, s.path)
	case err != nil:
		return fmt.Errorf("%w: the database file %s cannot be checked: %w", store.ErrUnavailable, s.path, err)
	case !os.SameFile(fi, s.file):
		return fmt.Errorf("%w: the database file %s was replaced by another file after Open", store.ErrUnavailable, s.path)
	}
	return nil
}

// settle moves what the write-ahead log holds into the file the store has
// open, and empties the log, once its file at the path is gone. The log
// stays at the path (path-wal) and SQLite does not check whose it is: a
// database put at the path later would take its pages for its own, and the
// records appended before would be lost to the file they belong to. The
// writer calls it, on its connection, outside a transaction.
func (s *Store) settle(ctx context.Context, conn *sql.Conn) {
	if s.settled {
		return
	}
	s.settled = true
	var busy, logged, moved int
	err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logged, &moved)
	if err == nil && busy != 0 {
		err = errors.New("readers kept it busy")
	}
	if err != nil {
		s.log.Error("sqlitestore: could not move the write-ahead log into the database file, which is no longer at its path", "path", s.path, "err", err)
	}
}

// SQLite's primary result codes that concern the database file.
const (
	sqlitePerm     = 3
	sqliteBusy     = 5
	sqliteReadOnly = 8
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteCantOpen = 14
	sqliteNotADB   = 26
)

// explain adds to err, an error from SQLite about the database at path,
// what is wrong with the file or its directory. SQLite says only "unable
// to open database file (14)" for a missing directory, a read-only one and
// a path that is a directory alike, and "disk I/O error" when a write hits
// the file size limit: the file system tells them apart.
func explain(path string, err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	code := se.Code() & 0xff
	switch code {
	case sqlitePerm, sqliteReadOnly, sqliteIOErr, sqliteFull, sqliteCantOpen:
	case sqliteNotADB:
		return fmt.Errorf("not an SQLite database: %w", err)
	default:
		return err
	}
	if why := fileProblem(path, code); why != "" {
		return fmt.Errorf("%s: %w", why, err)
	}
	return err
}

// fileProblem looks at the file system for what makes SQLite's error code
// about the database at path, and returns it in words, or "" if it sees
// nothing wrong.
func fileProblem(path string, code int) string {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("directory %s does not exist: create it first (Open does not create directories)", dir)
	case errors.Is(err, syscall.ENOTDIR), err == nil && !fi.IsDir():
		return fmt.Sprintf("%s is not a directory: a part of the path is a file", dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Sprintf("%s is a directory, not a database file", path)
	}
	switch code {
	case sqliteFull, sqliteIOErr:
		if limit, ok := fileSizeLimit(); ok {
			return fmt.Sprintf("file too large: writing %s failed, and this process may not write files larger than %d bytes (RLIMIT_FSIZE); the database is %d bytes, its write-ahead log %d",
				path, limit, fileSize(path), fileSize(path+"-wal"))
		}
		if code == sqliteFull {
			return fmt.Sprintf("the disk that holds %s is full", path)
		}
		return ""
	}
	// Not writable: the file, or the directory, where SQLite creates the
	// file and its -wal and -shm files.
	if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return notWritable(path, err)
	}
	f, err := os.CreateTemp(dir, ".sqlitestore-probe-*")
	if err != nil {
		return notWritable("directory "+dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return ""
}

func notWritable(what string, err error) string {
	if errors.Is(err, syscall.EROFS) {
		return fmt.Sprintf("%s is on a read-only file system", what)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("%s is not writable (%v)", what, err)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// isBusy reports whether err is SQLite's SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteBusy
}
