package e2e_test

import (
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// TestPostExpiryNoticeOnceToTheContractManager: with RENEWALS_MILESTONES
// ending in -1, a subscription that ended yesterday and was not renewed
// gets one post-expiry notice, in its own template, to its contract manager
// alone, however many passes run; with the default milestones it gets none.
func TestPostExpiryNoticeOnceToTheContractManager(t *testing.T) {
	today := subscription.Today(time.Now(), time.UTC)
	end := today.AddDays(-1)
	csv := "subscription_id,end_date,product,cm_name,cm_email,pa_name,pa_email,sa_emails,locale\n" +
		"PX1," + end.String() + ",AutoCAD,Casey Manager,cm-px1@customer.example,Pat Admin,pa-px1@customer.example,sa1-px1@customer.example;sa2-px1@customer.example,en-US\n" +
		"PX2," + today.AddDays(-30).String() + ",AutoCAD,Casey Manager,cm-px2@customer.example,,,,\n"

	t.Run("off by default", func(t *testing.T) {
		relay := testenv.SMTP(t)
		s := e2e.Start(t, e2e.Options{Env: map[string]string{"RENEWALS_SMTP_URL": relay.URL()}})
		if r := s.CLIInput(t, csv, "import", "-"); r.Code != 0 {
			t.Fatalf("import: %+v", r)
		}
		for _, d := range []subscription.Date{today, today.AddDays(1)} {
			if r := s.CLI(t, "run", "--as-of", d.String(), "--wait"); r.Code != 0 || !strings.Contains(r.Stdout, "0 due") {
				t.Fatalf("run --as-of %s: %+v, want nothing due", d, r)
			}
		}
		if n := len(relay.Messages()); n != 0 {
			t.Errorf("%d emails sent after the end date without a post-expiry milestone", n)
		}
	})

	t.Run("configured", func(t *testing.T) {
		relay := testenv.SMTP(t)
		s := e2e.Start(t, e2e.Options{Env: map[string]string{"RENEWALS_SMTP_URL": relay.URL(), "RENEWALS_MILESTONES": "90,45,30,-1"}})
		if r := s.CLIInput(t, csv, "import", "-"); r.Code != 0 {
			t.Fatalf("import: %+v", r)
		}
		for _, d := range []subscription.Date{today, today, today.AddDays(1), today.AddDays(12)} {
			if r := s.CLI(t, "run", "--as-of", d.String(), "--wait"); r.Code != 0 {
				t.Fatalf("run --as-of %s: %+v", d, r)
			}
		}
		msgs := relay.WaitFor(1, 10*time.Second)
		if len(msgs) != 1 {
			t.Fatalf("%d emails, want exactly 1 (PX2 ended 30 days ago: past the post-expiry notice's days)", len(msgs))
		}
		m := msgs[0]
		if len(m.To) != 1 || m.To[0] != "cm-px1@customer.example" {
			t.Errorf("envelope recipients %v, want the contract manager alone", m.To)
		}
		msg, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := msg.Header.Get("X-Renewal-Notice"), "PX1:"+end.String()+":-1"; got != want {
			t.Errorf("X-Renewal-Notice %q, want %q", got, want)
		}
		for _, h := range []string{"Cc", "Bcc"} {
			if v := msg.Header.Get(h); v != "" {
				t.Errorf("%s: %s on a notice", h, v)
			}
		}
		if to := msg.Header.Get("To"); !strings.Contains(to, "cm-px1@customer.example") || strings.Contains(to, ",") {
			t.Errorf("To: %s, want the contract manager alone", to)
		}
		if subj := msg.Header.Get("Subject"); !strings.Contains(subj, "ended on") || !strings.Contains(subj, "can still be renewed") {
			t.Errorf("Subject %q is not the post-expiry template's", subj)
		}
		data := string(m.Data)
		for _, other := range []string{"pa-px1@", "sa1-px1@", "sa2-px1@"} {
			if strings.Contains(data, other) {
				t.Errorf("the post-expiry notice names %s", other)
			}
		}
		r := s.CLI(t, "notices", "--subscription", "PX1")
		if r.Code != 0 || strings.Count(r.Stdout, ":-1") != 1 || !strings.Contains(r.Stdout, "sent") {
			t.Errorf("notices of PX1: %+v", r)
		}
	})
}
