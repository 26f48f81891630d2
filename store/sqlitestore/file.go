package sqlitestore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"modernc.org/sqlite"
)

// SQLite's primary result codes that concern the database file.
const (
	sqlitePerm     = 3
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
