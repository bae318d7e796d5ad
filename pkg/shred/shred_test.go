package shred_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

func sample() subscription.Subscription {
	seats := 10
	return subscription.Subscription{
		ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Product: "Suite", Seats: &seats,
		Status:          subscription.StatusActive,
		ContractManager: subscription.Contact{Name: "Ada Lovelace", Email: "ada@example.com", Phone: "+44 20 7946 0000"},
		PrimaryAdmin:    subscription.Contact{Name: "Charles Babbage", Email: "cb@example.com"},
		SecondaryAdmins: []string{"sa1@example.com", "sa2@example.com"},
	}
}

func TestRoundTrip(t *testing.T) {
	key, err := shred.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s := sample()
	r, err := shred.SealSubscription(key, s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Personal() {
		if bytes.Contains(b, []byte(p)) {
			t.Errorf("stored record holds personal data %q in clear", p)
		}
	}
	r2, err := shred.UnmarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := shred.OpenSubscription(key, r2)
	if err != nil {
		t.Fatal(err)
	}
	if !subscription.Equal(got, s) {
		t.Errorf("round trip = %+v, want %+v", got, s)
	}
	if got, want := r2.End, s.EndDate.Ordinal(); got != want {
		t.Errorf("End = %d, want %d", got, want)
	}
}

func TestDigestComparesData(t *testing.T) {
	key, _ := shred.NewKey()
	s := sample()
	a, _ := shred.SealSubscription(key, s)
	b, _ := shred.SealSubscription(key, s)
	if bytes.Equal(a.Sealed, b.Sealed) {
		t.Error("two seals of the same data are identical: nonce reused")
	}
	if !shred.SameData(a, b) {
		t.Error("SameData = false for the same subscription")
	}
	s.ContractManager.Email = "new@example.com"
	c, _ := shred.SealSubscription(key, s)
	if shred.SameData(a, c) {
		t.Error("SameData = true after the contract manager changed")
	}
	other, _ := shred.NewKey()
	d, _ := shred.SealSubscription(other, sample())
	if a.Digest == d.Digest {
		t.Error("digest does not depend on the key")
	}
}

func TestWrongKeyOrID(t *testing.T) {
	key, _ := shred.NewKey()
	other, _ := shred.NewKey()
	r, _ := shred.SealSubscription(key, sample())
	if _, err := shred.OpenSubscription(other, r); !errors.Is(err, shred.ErrOpen) {
		t.Errorf("open with another key: err = %v, want ErrOpen", err)
	}
	sealed, _ := shred.Seal(key, []byte("x"), []byte("id-1"))
	if _, err := shred.Open(key, sealed, []byte("id-2")); !errors.Is(err, shred.ErrOpen) {
		t.Errorf("open with another id: err = %v, want ErrOpen", err)
	}
	if _, err := shred.Seal(key[:32], []byte("x"), nil); !errors.Is(err, shred.ErrBadKey) {
		t.Errorf("seal with a short key: err = %v, want ErrBadKey", err)
	}
	if _, err := shred.Open(key, []byte("short"), nil); !errors.Is(err, shred.ErrOpen) || !strings.Contains(err.Error(), "too short") {
		t.Errorf("open short data: err = %v", err)
	}
}
