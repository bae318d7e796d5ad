package shred

import (
	"encoding/json"
	"fmt"

	"renewals/pkg/subscription"
)

// CallRecord is the stored form of a call: its non-personal fields in
// clear, the caller and the note sealed under the subscription's data key,
// so that erasing the subscription's key leaves the call unreadable.
type CallRecord struct {
	Clear  json.RawMessage `json:"c"`
	Sealed []byte          `json:"p"`
}

type callPersonal struct {
	Caller string `json:"caller,omitempty"`
	Note   string `json:"note,omitempty"`
}

func callAAD(c subscription.Call) []byte { return []byte(c.SubscriptionID + ":call:" + c.ID) }

// SealCall returns the stored form of c under key.
func SealCall(key []byte, c subscription.Call) ([]byte, error) {
	p, err := json.Marshal(callPersonal{Caller: c.Caller, Note: c.Note})
	if err != nil {
		return nil, fmt.Errorf("seal call: %w", err)
	}
	sealed, err := Seal(key, p, callAAD(c))
	if err != nil {
		return nil, fmt.Errorf("seal call of %s: %w", c.SubscriptionID, err)
	}
	c.Caller, c.Note = "", ""
	clear, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("seal call: %w", err)
	}
	return json.Marshal(CallRecord{Clear: clear, Sealed: sealed})
}

// OpenCall reads what SealCall wrote, opening its personal part with key.
// It returns an error wrapping ErrOpen when key is not the one it was
// sealed under.
func OpenCall(key, b []byte) (subscription.Call, error) {
	var r CallRecord
	var c subscription.Call
	if err := json.Unmarshal(b, &r); err != nil {
		return c, fmt.Errorf("decode call record: %w", err)
	}
	if err := json.Unmarshal(r.Clear, &c); err != nil {
		return c, fmt.Errorf("decode call record: %w", err)
	}
	pb, err := Open(key, r.Sealed, callAAD(c))
	if err != nil {
		return c, fmt.Errorf("open call of %s: %w", c.SubscriptionID, err)
	}
	var p callPersonal
	if err := json.Unmarshal(pb, &p); err != nil {
		return c, fmt.Errorf("decode call of %s: %w", c.SubscriptionID, err)
	}
	c.Caller, c.Note = p.Caller, p.Note
	return c, nil
}
