package pgstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"weak"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The append statement's arrays go to PostgreSQL encoded here, in binary,
// through pgconn: pgx's encoding of its arrays (through reflection, an
// allocation or more per element) cost more of a group commit's time than
// the statement's round trip, and a PublishTx of one event allocated about
// a hundred times.

// appendParams is the scratch space of one append statement: its
// parameters, in one buffer.
type appendParams struct {
	buf    []byte
	params [13][]byte
}

var appendScratch = sync.Pool{New: func() any { return new(appendParams) }}

// maxKeptScratch is the largest buffer that goes back to the pool: one
// large batch should not hold its memory for the small ones after it.
const maxKeptScratch = 1 << 20

func (p *appendParams) release() {
	if cap(p.buf) > maxKeptScratch {
		p.buf = nil
	}
	p.params = [13][]byte{}
	appendScratch.Put(p)
}

// Element type OIDs of the append statement's arrays, besides rows.go's.
const (
	oidBytea       = 17
	oidTimestamptz = 1184
	oidJSONB       = 3802
)

// jsonbPrefix comes before a jsonb value's JSON text in binary: the
// format's version, 1.
var jsonbPrefix = []byte{1}

// encode returns a's first n parameters (10 for appendPlainSQL, 13 for
// appendSQL) in binary, in p's buffer.
func (p *appendParams) encode(a *args, n int) [][]byte {
	k := a.len()
	size := 10*20 + 10*4*k + 8*k + k + 4*k // headers, lengths, times, jsonb versions, partitions
	for i := range k {
		size += len(a.ids[i]) + len(a.topics[i]) + len(a.kinds[i]) + len(a.aggs[i]) +
			len(a.ptypes[i]) + len(a.ctypes[i]) + len(a.metas[i]) + len(a.payloads[i])
	}
	if n > 10 {
		size += 3*20 + len(a.eaggs)*(4+4+8+4+4)
		for _, e := range a.eaggs {
			size += len(e)
		}
	}
	buf := slices.Grow(p.buf[:0], size)
	var at [14]int
	texts := func(col []string) {
		buf = appendArrayHeader(buf, oidText, len(col))
		for _, s := range col {
			buf = append(binary.BigEndian.AppendUint32(buf, uint32(len(s))), s...)
		}
	}
	for i, col := range [...][]string{a.ids, a.topics, a.kinds, a.aggs} {
		at[i] = len(buf)
		texts(col)
	}
	at[4] = len(buf)
	buf = appendArrayHeader(buf, oidTimestamptz, k)
	for _, t := range a.times {
		buf = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), uint64(t.UnixMicro()-pgEpochMicros))
	}
	at[5] = len(buf)
	buf = appendNullable(buf, oidJSONB, a.metas, jsonbPrefix)
	at[6] = len(buf)
	texts(a.ptypes)
	at[7] = len(buf)
	texts(a.ctypes)
	at[8] = len(buf)
	buf = appendNullable(buf, oidBytea, a.payloads, nil)
	at[9] = len(buf)
	buf = appendArrayHeader(buf, oidInt4, k)
	for _, v := range a.parts {
		buf = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(buf, 4), uint32(v))
	}
	at[10] = len(buf)
	if n > 10 {
		texts(a.eaggs)
		at[11] = len(buf)
		buf = appendArrayHeader(buf, oidInt8, len(a.evers))
		for _, v := range a.evers {
			buf = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), uint64(v))
		}
		at[12] = len(buf)
		buf = appendArrayHeader(buf, oidInt4, len(a.eords))
		for _, o := range a.eords {
			buf = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(buf, 4), uint32(o))
		}
		at[13] = len(buf)
	}
	for i := range n {
		p.params[i] = buf[at[i]:at[i+1]:at[i+1]]
	}
	p.buf = buf
	return p.params[:n]
}

// appendNullable appends col as an array of oid whose nil elements are
// NULL, each other one after prefix.
func appendNullable[E ~[]byte](buf []byte, oid uint32, col []E, prefix []byte) []byte {
	start := len(buf)
	buf = appendArrayHeader(buf, oid, len(col))
	for _, v := range col {
		if v == nil {
			buf[start+7] = 1 // the header's "has NULLs" flag
			buf = binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF)
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(prefix)+len(v)))
		buf = append(append(buf, prefix...), v...)
	}
	return buf
}

// failedAt is how far a failed execAppend got.
type failedAt uint8

const (
	failedBefore failedAt = iota // before the append: preparing it, or the statement before
	failedAppend                 // the append statement, which changed nothing
	failedAfter                  // the statement after
	failedAnswer                 // every statement ran, but the answer was not what was sent for
)

// execAppend runs the append statement that stores a on conn, with its
// parameters in binary, after the statement before and before the
// statement after (neither with parameters, either may be empty), all in
// one round trip. It returns the records' positions and versions in batch
// order. On error, failed says how far it got: see the failed constants.
//
// prepare says whether conn keeps prepared statements (see execBinary).
func (s *Store) execAppend(ctx context.Context, conn *pgx.Conn, prepare bool, a *args, notify bool, before, after string) (res []result, failed failedAt, err error) {
	sql, n := s.appendStatement(a, notify)
	p := appendScratch.Get().(*appendParams)
	defer p.release()
	values := p.encode(a, n)

	var b pgconn.Batch
	stmts := make([]failedAt, 0, 3) // which statements the batch holds, in order
	if before != "" {
		b.ExecParams(before, nil, nil, nil, nil)
		stmts = append(stmts, failedBefore)
	}
	if err := queueBinary(ctx, &b, conn, prepare, sql, values); err != nil {
		return nil, failedBefore, err
	}
	stmts = append(stmts, failedAppend)
	if after != "" {
		b.ExecParams(after, nil, nil, nil, nil)
		stmts = append(stmts, failedAfter)
	}

	res = make([]result, 0, a.len())
	done, rowErr, err := runBatch(ctx, conn, &b, len(stmts), slices.Index(stmts, failedAppend), func(v [][]byte) error {
		if len(v) != 2 || len(v[0]) != 8 || len(v[1]) != 8 {
			return fmt.Errorf("append statement returned a row of %d columns, want two 8-byte integers", len(v))
		}
		if pos := int64(binary.BigEndian.Uint64(v[0])); pos >= 0 { // not the NOTIFY row
			res = append(res, result{pos, int64(binary.BigEndian.Uint64(v[1]))})
		}
		return nil
	})
	if err != nil {
		failed = failedAnswer
		if done < len(stmts) {
			failed = stmts[done]
		}
		if failed == failedAppend {
			s.forgetStatement(ctx, conn, prepare, sql, err)
		}
		return nil, failed, err
	}
	if rowErr != nil {
		return nil, failedAnswer, rowErr
	}
	if len(res) != a.len() {
		return nil, failedAnswer, fmt.Errorf("append statement returned %d rows for %d records", len(res), a.len())
	}
	// Positions follow batch order (the statement inserts in that order);
	// rows need not.
	slices.SortFunc(res, func(x, y result) int { return cmp.Compare(x.pos, y.pos) })
	return res, 0, nil
}

// queueBinary adds sql to b with its parameters in binary and binary
// results: prepared on conn, once per connection, if prepare (see
// execBinary), and unnamed otherwise.
func queueBinary(ctx context.Context, b *pgconn.Batch, conn *pgx.Conn, prepare bool, sql string, params [][]byte) error {
	if !prepare {
		b.ExecParams(sql, params, nil, binaryFormat, binaryFormat)
		return nil
	}
	sd, err := conn.Prepare(ctx, sql, sql)
	if err != nil {
		return err
	}
	b.ExecStatement(sd, params, binaryFormat, binaryFormat)
	return nil
}

// runBatch sends b, n statements, on conn and reads their results, handing
// each row of statement rows (0-based) to row; the first error row returns
// is rowErr, and row sees no more rows. It returns how many statements
// completed, and err, the error that ended the batch, if any: a statement
// that fails ends it, as PostgreSQL skips the rest.
func runBatch(ctx context.Context, conn *pgx.Conn, b *pgconn.Batch, n, rows int, row func([][]byte) error) (done int, rowErr, err error) {
	mrr := conn.PgConn().ExecBatch(ctx, b)
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		if done == rows {
			for rowErr == nil && rr.NextRow() {
				rowErr = row(rr.Values())
			}
		}
		if _, err := rr.Close(); err != nil {
			break
		}
		done++
	}
	err = mrr.Close()
	if err == nil && done < n {
		err = fmt.Errorf("the server answered %d of %d statements", done, n)
	}
	return done, rowErr, err
}

// connModes remembers whether the connections of callers' transactions
// (AppendTx) keep prepared statements, as pgx's default mode does (see
// execBinary): a transaction may be on a connection of the caller's own,
// of another mode than the store's pool, and pgx copies a connection's
// whole configuration, a few hundred bytes, on every read of its mode. An
// entry goes when its connection is collected. It is safe for concurrent
// use.
type connModes struct {
	mu sync.Mutex
	m  map[weak.Pointer[pgx.Conn]]bool
}

func (c *connModes) prepares(conn *pgx.Conn) bool {
	k := weak.Make(conn)
	c.mu.Lock()
	p, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return p
	}
	p = conn.Config().DefaultQueryExecMode == pgx.QueryExecModeCacheStatement
	c.mu.Lock()
	if c.m == nil {
		c.m = map[weak.Pointer[pgx.Conn]]bool{}
	}
	if _, ok := c.m[k]; !ok {
		c.m[k] = p
		runtime.AddCleanup(conn, c.forget, k)
	}
	c.mu.Unlock()
	return p
}

func (c *connModes) forget(k weak.Pointer[pgx.Conn]) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}
