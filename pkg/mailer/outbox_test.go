package mailer_test

import (
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"renewals/pkg/mailer"
	"renewals/pkg/subscription"
)

// EraseFromOutbox deletes every file of the subscription, and a temporary
// file left of one, and nothing of the subscriptions whose ids start with
// the same characters or hold '_'.
func TestEraseFromOutboxDeletesOnlyTheSubscriptionsFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, err := mailer.NewOutbox(dir, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	const id = "A1"
	var erased []string
	for _, id := range []string{id, "A10", "A1-2", "A1_2", "A1_2027-03-31_90", "B"} {
		for _, milestone := range []int{90, 45} {
			m := sample(id)
			m.Key.Milestone = milestone
			if err := o.Send(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			if id == "A1" {
				erased = append(erased, mailer.FileName(m.Key))
			}
		}
	}
	tmpOf := func(id string) string {
		return "." + mailer.FileName(subscription.NoticeKey{SubscriptionID: id, EndDate: subscription.MustDate("2027-03-31"), Milestone: 30}) + ".tmp-123"
	}
	others := []string{tmpOf("A10"), "A1.eml", "A1_notes.txt", "A1_x_90.eml"}
	erased = append(erased, tmpOf(id))
	for _, name := range append(others, tmpOf(id)) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("Bcc: carla@customer.example\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	before := readDir(t, dir)

	n, err := mailer.EraseFromOutbox(dir, id)
	if err != nil || n != len(erased) {
		t.Errorf("EraseFromOutbox = %d, %v; want %d files deleted", n, err, len(erased))
	}
	after := readDir(t, dir)
	for name, data := range before {
		got, kept := after[name]
		switch {
		case slices.Contains(erased, name) && kept:
			t.Errorf("%s is still in the outbox", name)
		case !slices.Contains(erased, name) && !kept:
			t.Errorf("%s was deleted, but it is not of subscription %s", name, id)
		case kept && !bytes.Equal(got, data):
			t.Errorf("%s was changed", name)
		}
	}
	if len(after) != len(before)-len(erased) || len(after) < 10+len(others) {
		t.Errorf("outbox holds %d files after, %d before; want %d deleted", len(after), len(before), len(erased))
	}

	// Again: nothing left to delete. No outbox at all: likewise.
	if n, err := mailer.EraseFromOutbox(dir, id); n != 0 || err != nil {
		t.Errorf("second EraseFromOutbox = %d, %v; want 0, nil", n, err)
	}
	if n, err := mailer.EraseFromOutbox(filepath.Join(t.TempDir(), "none"), id); n != 0 || err != nil {
		t.Errorf("EraseFromOutbox of a missing dir = %d, %v; want 0, nil", n, err)
	}
}

// A symbolic link named for the subscription is deleted as a name of its
// own; the file it points to, another subscription's, stays.
func TestEraseFromOutboxLeavesWhatALinkPointsTo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, err := mailer.NewOutbox(dir, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	other := sample("A10")
	if err := o.Send(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	target := mailer.FileName(other.Key)
	link := mailer.FileName(sample("A1").Key)
	if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	if n, err := mailer.EraseFromOutbox(dir, "A1"); n != 1 || err != nil {
		t.Errorf("EraseFromOutbox = %d, %v; want the link deleted", n, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, link)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link %s: %v, want it deleted", link, err)
	}
	if _, err := os.Stat(filepath.Join(dir, target)); err != nil {
		t.Errorf("%s, subscription A10's, is gone: %v", target, err)
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// A contract email is one file named for each of its notices; erasing any
// one of its subscriptions deletes every name, and nothing else.
func TestOutboxContractEmailErasedWhole(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, err := mailer.NewOutbox(dir, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	m := sample("C1")
	other := sample("C2").Key
	third := sample("C3").Key
	m.Also = []subscription.NoticeKey{other, third}
	if err := o.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(t.Context(), sample("D1")); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(dir, mailer.FileName(m.Key)))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range m.Also {
		if b, err := os.ReadFile(filepath.Join(dir, mailer.FileName(k))); err != nil || !bytes.Equal(b, first) {
			t.Errorf("%s: %v, or not the contract email", mailer.FileName(k), err)
		}
	}
	if !bytes.Contains(first, []byte("X-Renewal-Notice: "+m.Key.String()+", "+other.String()+", "+third.String())) {
		t.Errorf("the email's header does not list its three keys:\n%s", first)
	}
	n, err := mailer.EraseFromOutbox(dir, other.SubscriptionID)
	if err != nil || n != 3 {
		t.Errorf("EraseFromOutbox = %d, %v; want the 3 names of the contract email", n, err)
	}
	if got := readDir(t, dir); len(got) != 1 || got[mailer.FileName(sample("D1").Key)] == nil {
		t.Errorf("outbox after the erasure: %v, want only D1's email", slices.Sorted(maps.Keys(got)))
	}
}
