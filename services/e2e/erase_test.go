package e2e_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"renewals/services/e2e"
)

// TestErasureDeletesOutboxEmails: the emails written to the outbox for a
// subscription hold its contract manager's name and address, so erasing it
// deletes them; the emails of subscriptions whose ids start with the same
// characters stay as they were.
func TestErasureDeletesOutboxEmails(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	waitStartupPass(t, s)
	csv := "subscription_id,end_date,product,cm_name,cm_email\n" +
		"E1,2027-01-15,AutoCAD,Erika Erased,erika.erased@customer.example\n" +
		"E10,2027-01-15,AutoCAD,Kept Ten,kept.ten@customer.example\n" +
		"E1_2,2027-01-15,AutoCAD,Kept Underscore,kept.underscore@customer.example\n" +
		"E1-2,2027-01-15,AutoCAD,Kept Dash,kept.dash@customer.example\n"
	path := filepath.Join(t.TempDir(), "subs.csv")
	if err := os.WriteFile(path, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := s.CLI(t, "import", path); r.Code != 0 {
		t.Fatalf("import: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := runPass(t, s, "2026-12-01"); got["sent"] != 4 {
		t.Fatalf("outcomes %v, want 4 sent\n%s", got, s.Logs())
	}
	before := s.Outbox(t)
	const erased = "E1_2027-01-15_45.eml"
	if _, ok := before[erased]; !ok || len(before) != 4 {
		t.Fatalf("outbox holds %d files, want 4 with %s", len(before), erased)
	}

	if r := s.CLI(t, "erase", "E1"); r.Code != 0 {
		t.Fatalf("erase: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	after := s.Outbox(t)
	if _, ok := after[erased]; ok {
		t.Errorf("%s is still in the outbox after the erasure", erased)
	}
	for name, data := range before {
		if name == erased {
			continue
		}
		if got, ok := after[name]; !ok || !bytes.Equal(got, data) {
			t.Errorf("%s was deleted or changed by the erasure of E1 (kept %v)", name, ok)
		}
	}
	entries, err := os.ReadDir(filepath.Join(s.DataDir, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(s.DataDir, "outbox", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"erika.erased@customer.example", "Erika Erased"} {
			if bytes.Contains(data, []byte(p)) || strings.Contains(e.Name(), p) {
				t.Errorf("outbox file %s still holds %q", e.Name(), p)
			}
		}
	}
}
