package store

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Consumer groups.
//
// A store that implements [Grouper] lets several consumers, in one process
// or many, share the work of one named subscription: a consumer group. The
// log is split into a fixed number of partitions, a property of the store
// (set when its schema is created, like the partitions of a Kafka topic):
// every record belongs to the partition [Partition] gives for it, so all
// records of one aggregate are in one partition, in their global order.
// A group keeps, per partition, an owner with a lease and a checkpoint.
// Each member claims a fair share of the partitions, reads and handles
// only those, and checkpoints each one; a member that leaves releases its
// partitions, and one that stops renewing loses them when its lease
// expires, to be resumed by another member from the checkpoint.
//
// The contract is written so that a store backed by a broker with native
// consumer groups can implement it with the broker's own assignment
// instead of rows of leases: Claim is its poll for assignments, Commit its
// offset commit, Release its leave.

// DefaultPartitions is the number of partitions a driver gives a new
// store unless configured otherwise.
const DefaultPartitions = 64

// MaxPartitions is the largest number of partitions a store may have.
const MaxPartitions = 4096

// ErrLeaseLost: a member wrote the checkpoint of a partition whose lease
// it no longer holds (it expired and another member claimed it, or it was
// released). The write changed nothing.
var ErrLeaseLost = errors.New("partition lease lost")

// PartitionKey returns the 32-bit hash that places a record in a partition:
// the first four bytes, big-endian, of the MD5 digest of its AggregateID,
// or of its ID when it has none, so that records of one aggregate share a
// partition and records without one spread over all. MD5 is not used for
// security here: it is the hash both Go and SQL databases (PostgreSQL's
// md5) compute alike.
func PartitionKey(aggregateID, id string) uint32 {
	k := aggregateID
	if k == "" {
		k = id
	}
	sum := md5.Sum([]byte(k))
	return binary.BigEndian.Uint32(sum[:4])
}

// Partition returns the partition, of n, of a record with the given
// aggregate ID and ID: PartitionKey modulo n.
func Partition(aggregateID, id string, n int) int {
	return int(PartitionKey(aggregateID, id) % uint32(n))
}

// ValidatePartitions checks a partition count: 1 to MaxPartitions.
func ValidatePartitions(n int) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("partition count must be between 1 and %d, got %d", MaxPartitions, n)
	}
	return nil
}

// Lease is a member's hold on one partition of a group, as [Grouper.Claim]
// returns it.
type Lease struct {
	// Partition is the partition, from 0 to Partitions()-1.
	Partition int
	// Token fences the lease: it changes whenever the partition changes
	// owner, and [Grouper.Commit] refuses a checkpoint with a stale one.
	Token int64
	// Cursor is the partition's checkpoint when the lease was granted or
	// renewed: where its records are to be read from.
	Cursor Cursor
	// TakenOver is set in the Claim that took the partition from a member
	// that did not release it: one whose lease ran out, or (on stores that
	// can tell) whose process exited. That member may have handled events
	// after the checkpoint, which the new holder handles again.
	TakenOver bool
}

// Assignment is what [Grouper.Claim] gives a member.
type Assignment struct {
	// Leases are the partitions the member holds, in partition order.
	Leases []Lease
	// Members counts the group's live members, the caller included.
	Members int
	// Share is how many partitions the member should hold: its fair
	// share, [MemberShare] of the partitions among Members for the
	// member's rank in the byte order of the live members' IDs. The
	// shares of a group's members differ by at most one and add up to
	// the partitions. A member holding more than its Share releases the
	// extras (after checkpointing them) with [Grouper.Release].
	Share int
}

// Checkpoint is a partition's checkpoint, as [Grouper.Commit] writes it.
type Checkpoint struct {
	Partition int
	Token     int64 // the Token of the member's Lease
	Cursor    Cursor
}

// PartitionCursor names a partition and where to read it from, for
// [Grouper.ReadPartitions].
type PartitionCursor struct {
	Partition int
	After     Cursor
}

// GroupInfo describes a group, as [Grouper.Group] returns it.
type GroupInfo struct {
	Name       string
	Partitions []PartitionInfo // every partition, in order; empty for a group never joined
	Members    []MemberInfo    // live members, by ID
}

// PartitionInfo describes one partition of a group.
type PartitionInfo struct {
	Partition int
	// Owner is the member that holds the lease, "" for none (released, or
	// expired).
	Owner string
	// Expires is when the owner's lease runs out, zero without an owner.
	Expires time.Time
	// Cursor is the partition's checkpoint.
	Cursor Cursor
	// Lag counts the partition's records after Cursor.
	Lag int64
}

// MemberInfo describes one live member of a group.
type MemberInfo struct {
	ID         string
	Expires    time.Time // when the member counts as gone unless it claims again
	Partitions int       // how many partitions it holds
}

// Grouper is implemented by stores that run consumer groups (see the
// package's section on them). The rules of [Store] on concurrency, contexts
// and closing apply. Group and member names must pass [ValidateName]; a
// bad name fails with ErrInvalidName, a partition out of range or a
// non-positive ttl with an error saying so, before the database is
// touched.
//
// A group's partitions start at the checkpoint that [Store.Checkpoint]
// holds under the group's name, if any (so that a subscription that ran
// alone before goes on where it was), else at the start of the log.
type Grouper interface {
	// Partitions returns the store's number of partitions, fixed when its
	// schema was created.
	Partitions() int

	// Claim joins member to group, or renews it, for ttl: it renews the
	// leases the member holds and claims partitions without a live owner
	// until the member holds its Share. Only one member holds a partition
	// at a time, and the lease a member got lasts at least ttl from the
	// moment Claim was called (the database's clock decides expiry).
	Claim(ctx context.Context, group, member string, ttl time.Duration) (Assignment, error)

	// Release gives up the member's leases of the partitions, at once. With
	// no partitions it releases them all and removes the member from the
	// group. Partitions the member does not hold are ignored.
	Release(ctx context.Context, group, member string, partitions ...int) error

	// Commit saves the checkpoints of partitions the member holds, each
	// fenced by its lease's Token. It saves those whose lease the member
	// still holds; if any has been lost it fails with an error matching
	// ErrLeaseLost (a *LeaseLostError naming them).
	Commit(ctx context.Context, group, member string, cps ...Checkpoint) error

	// ReadPartitions returns up to limit records of the partitions named,
	// each after its partition's cursor, in global order (as [Store.Read]
	// would return them, leaving out other partitions), with their Cursor
	// set; a record's partition is the one [Partition] gives it. On
	// success it also moves each from[i].After on to where to read that
	// partition from next: past its last record returned, or past the
	// last record the read covered if that is further (the end of the log
	// as the read saw it, for a read that returned fewer than limit
	// records), so that an idle partition's checkpoint keeps up with the
	// log and with retention. On error it leaves from as it was. The
	// cursors are moved in place, so that a member reading at light load
	// allocates nothing for them; the store keeps no reference to from.
	// Cursors are those of Read, so a global cursor is a valid start for
	// any partition; errors are those of Read (limit as in [Query]).
	ReadPartitions(ctx context.Context, from []PartitionCursor, limit int) ([]Record, error)

	// Group describes group: its partitions with owner, checkpoint and lag,
	// and its live members.
	Group(ctx context.Context, group string) (GroupInfo, error)
}

// LeaseLostError reports checkpoints that [Grouper.Commit] refused, as the
// member no longer holds their partitions. It matches [ErrLeaseLost].
type LeaseLostError struct {
	Group, Member string
	Partitions    []int
}

// Error names the group, member and partitions.
func (e *LeaseLostError) Error() string {
	return fmt.Sprintf("member %s of group %s no longer holds partitions %v: %v", e.Member, e.Group, e.Partitions, ErrLeaseLost)
}

// Is makes errors.Is(err, ErrLeaseLost) true.
func (e *LeaseLostError) Is(target error) bool { return target == ErrLeaseLost }

// ValidateClaim checks the arguments of [Grouper.Claim].
func ValidateClaim(group, member string, ttl time.Duration) error {
	if err := ValidateName("group name", group); err != nil {
		return err
	}
	if err := ValidateName("member ID", member); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("lease TTL must be positive, got %v", ttl)
	}
	return nil
}

// ValidatePartition checks that p is a partition of a store with n.
func ValidatePartition(p, n int) error {
	if p < 0 || p >= n {
		return fmt.Errorf("partition %d out of range [0, %d)", p, n)
	}
	return nil
}

// Share returns ceil(partitions / members): the largest fair share of
// any member of a group with that many members (see [MemberShare]).
func Share(partitions, members int) int {
	members = max(members, 1)
	return (partitions + members - 1) / members
}

// MemberShare returns the fair share of the member of rank rank (from 0)
// among members, ranked by the byte order of their IDs: partitions /
// members, plus one for the first partitions % members of them. Fair
// shares differ by at most one and add up to partitions, so that when
// every member holds its share every partition is held; a share of
// ceil(partitions / members) for all could leave members without any
// (64 partitions among 9 members: eight shares of 8 cover them all).
func MemberShare(partitions, members, rank int) int {
	members = max(members, 1)
	share := partitions / members
	if rank < partitions%members {
		share++
	}
	return share
}
