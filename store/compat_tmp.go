package store

import "errors"

// DeadLetterRecord is a temporary alias until the store rename lands.
type DeadLetterRecord = DeadLetter

// ErrMaybeStored is a temporary stand-in until the store change lands.
var ErrMaybeStored = errors.New("store: the append may have been stored")
