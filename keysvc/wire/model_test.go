package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	cases := []struct {
		d    time.Duration
		json string
	}{
		{0, `"0s"`},
		{720 * time.Hour, `"720h0m0s"`},
		{90 * time.Minute, `"1h30m0s"`},
		{1500 * time.Millisecond, `"1.5s"`},
	}
	for _, c := range cases {
		b, err := json.Marshal(Duration(c.d))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.json {
			t.Errorf("Marshal(%v) = %s, want %s", c.d, b, c.json)
		}
		var d Duration
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if time.Duration(d) != c.d {
			t.Errorf("round trip of %v gave %v", c.d, time.Duration(d))
		}
	}
}

func TestDurationUnmarshal(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		msg  string // non-empty: must fail with this in the message
	}{
		{`"720h"`, 720 * time.Hour, ""},
		{`"30m"`, 30 * time.Minute, ""},
		{`"1h30m"`, 90 * time.Minute, ""},
		{`""`, 0, ""},
		{`null`, 0, ""},
		{`720`, 0, `duration must be a string such as "720h"`},
		{`true`, 0, `duration must be a string such as "720h"`},
		{`{}`, 0, `duration must be a string such as "720h"`},
		{`"720"`, 0, `duration must look like "720h" or "30m"`},
		{`"-1h"`, 0, `duration must look like "720h" or "30m"`},
		{`"soon"`, 0, `duration must look like "720h" or "30m"`},
		{`"1d"`, 0, `duration must look like "720h" or "30m"`},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			var r struct {
				D Duration `json:"d"`
			}
			r.D = Duration(time.Minute) // must be overwritten on success
			err := json.Unmarshal([]byte(`{"d":`+c.in+`}`), &r)
			if c.msg != "" {
				if err == nil || !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("err = %v, want %q", err, c.msg)
				}
				// Decode errors name fields, never values.
				if strings.HasPrefix(c.in, `"`) && strings.Contains(err.Error(), c.in) {
					t.Fatalf("err = %v quotes the value %s", err, c.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Duration(r.D) != c.want {
				t.Errorf("got %v, want %v", time.Duration(r.D), c.want)
			}
		})
	}
}

// Policy denies by default: only a grant naming both client and operation
// allows it (moved from keysvc with Policy).
func TestPolicyAllows(t *testing.T) {
	p := Policy{Grants: []Grant{
		{Client: "payments", Ops: []Op{OpSign, OpVerify}},
		{Client: "audit", Ops: []Op{OpRead}},
		{Client: "payments", Ops: []Op{OpPublic}}, // a second grant adds to the first
	}}
	cases := []struct {
		client string
		op     Op
		want   bool
	}{
		{"payments", OpSign, true},
		{"payments", OpVerify, true},
		{"payments", OpPublic, true},
		{"payments", OpRead, false},
		{"payments", OpManage, false},
		{"audit", OpRead, true},
		{"audit", OpSign, false},
		{"Payments", OpSign, false},
		{"", OpSign, false},
		{"stranger", OpRead, false},
	}
	for _, c := range cases {
		if got := p.Allows(c.client, c.op); got != c.want {
			t.Errorf("Allows(%q, %s) = %v, want %v", c.client, c.op, got, c.want)
		}
	}
	if (Policy{}).Allows("payments", OpSign) {
		t.Error("an empty policy allows something")
	}
}
