package sqlitestore

import (
	"fmt"
	"strconv"

	"github.com/ncore-io/event/store"
)

// A cursor is "p" followed by the decimal position of the last record read:
// short, safe in URLs, and the prefix rejects positions from elsewhere that
// happen to be numbers.
const cursorPrefix = "p"

func encodeCursor(pos int64) store.Cursor {
	return store.Cursor(cursorPrefix + strconv.FormatInt(pos, 10))
}

// decodeCursor returns the position c stands for; the zero Cursor is 0.
func decodeCursor(c store.Cursor) (int64, error) {
	if c == "" {
		return 0, nil
	}
	s := string(c)
	if len(s) < 2 || s[:1] != cursorPrefix || s[1] < '1' || s[1] > '9' {
		return 0, fmt.Errorf("%w: %q", store.ErrInvalidCursor, s)
	}
	for _, r := range s[1:] {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%w: %q", store.ErrInvalidCursor, s)
		}
	}
	pos, err := strconv.ParseInt(s[1:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", store.ErrInvalidCursor, s)
	}
	return pos, nil
}
