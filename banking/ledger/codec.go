package ledger

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Account records are read and rewritten twice per transfer inside the
// group commit, where every microsecond is serial, so they are stored in a
// small binary form instead of JSON (JSON decoding was a third of the time
// spent inside the commit). Journal records (receipts) and entries stay
// JSON: they are written once and read rarely.
//
// Layout, version 1; strings are a uvarint length and the bytes, integers
// varints:
//
//	0x01 id owner currency balance state created(unix ns) per-transaction daily day day-sent last-seq(uvarint)
const accountCodecV1 = 1

func encodeAccount(a *Account) []byte {
	b := make([]byte, 0, 96)
	b = append(b, accountCodecV1)
	for _, s := range []string{a.ID, a.Owner, a.Currency} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, a.Balance)
	b = append(b, byte(a.State))
	b = binary.AppendVarint(b, a.Created.UnixNano())
	b = binary.AppendVarint(b, a.Limits.PerTransaction)
	b = binary.AppendVarint(b, a.Limits.Daily)
	b = binary.AppendUvarint(b, uint64(len(a.Day)))
	b = append(b, a.Day...)
	b = binary.AppendVarint(b, a.DaySent)
	return binary.AppendUvarint(b, a.LastSeq)
}

func decodeAccount(v []byte, a *Account) error {
	d := decoder{b: v}
	if ver := d.byte(); ver != accountCodecV1 {
		return fmt.Errorf("%w: account record version %d", ErrCorrupt, ver)
	}
	a.ID, a.Owner, a.Currency = d.string(), d.string(), d.string()
	a.Balance = d.varint()
	a.State = State(d.byte())
	a.Created = time.Unix(0, d.varint()).UTC()
	a.Limits.PerTransaction = d.varint()
	a.Limits.Daily = d.varint()
	a.Day = d.string()
	a.DaySent = d.varint()
	a.LastSeq = d.uvarint()
	if d.bad || len(d.b) != 0 {
		return fmt.Errorf("%w: account record of %d bytes does not decode", ErrCorrupt, len(v))
	}
	return nil
}

// decoder reads the binary form; any overrun sets bad and yields zeros.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
