package store_test

import (
	"testing"

	"github.com/ncore-io/event/store"
)

// TestMemberShare checks that fair shares add up to the partitions,
// differ by at most one, go larger to the lower ranks, and that Share is
// the largest.
func TestMemberShare(t *testing.T) {
	for _, n := range []int{1, 2, 7, 64, 100, store.MaxPartitions} {
		for m := 1; m <= 130; m++ {
			total, least, most := 0, n, 0
			prev := n
			for r := range m {
				k := store.MemberShare(n, m, r)
				if k > prev {
					t.Fatalf("MemberShare(%d, %d, %d) = %d, more than rank %d's %d", n, m, r, k, r-1, prev)
				}
				prev = k
				total, least, most = total+k, min(least, k), max(most, k)
			}
			if total != n || most-least > 1 || most != store.Share(n, m) {
				t.Fatalf("%d partitions among %d members: shares add up to %d, from %d to %d (Share says %d); want %d, differing by at most one", n, m, total, least, most, store.Share(n, m), n)
			}
		}
	}
	if got := store.MemberShare(64, 9, 8); got != 7 {
		t.Errorf("MemberShare(64, 9, 8) = %d, want 7", got)
	}
}
