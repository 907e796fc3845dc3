package ledger

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestAccountCodec(t *testing.T) {
	for _, a := range []Account{
		{ID: "6222021001123456789", Owner: "cust-1", Currency: "CNY", Balance: 123, State: StateFrozen,
			Created: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Limits: Limits{PerTransaction: 5, Daily: 10},
			Day: "2026-01-02", DaySent: 7, LastSeq: math.MaxUint64},
		{ID: CashAccount("JPY"), Currency: "JPY", Balance: math.MinInt64, State: StateOpen, Created: time.Unix(0, 0).UTC()},
	} {
		v := encodeAccount(&a)
		var got Account
		if err := decodeAccount(v, &got); err != nil || got != a {
			t.Fatalf("round trip:\n got %+v, %v\nwant %+v", got, err, a)
		}
		for n := range len(v) {
			if err := decodeAccount(v[:n], &got); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated to %d bytes: %v", n, err)
			}
		}
		if err := decodeAccount(append(v, 0), &got); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
}
