package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
	"renewals/services/morning"
)

// TestRepsMorningListsOncePerDay: each rep of RENEWALS_REPS_FILE gets one
// email for a working day, listing exactly that rep's calls, however many
// passes run that day and across a restart; the next working day brings a
// new one, a weekend none.
func TestRepsMorningListsOncePerDay(t *testing.T) {
	relay := testenv.SMTP(t)
	reps := filepath.Join(t.TempDir(), "reps.csv")
	if err := os.WriteFile(reps, []byte("name,email\nAnn Rep,ann@reseller.example\nBob Rep,bob@reseller.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RENEWALS_SMTP_URL": relay.URL(), "RENEWALS_REPS_FILE": reps}
	s := e2e.Start(t, e2e.Options{Env: env})
	today := subscription.Today(time.Now(), time.UTC)
	wed := today.AddDays(1)
	for !strings.HasPrefix(weekday(wed), "Wed") {
		wed = wed.AddDays(1)
	}
	day := func(n int) string { return wed.AddDays(n).String() }
	csv := "subscription_id,end_date,customer_name,product,cm_name,cm_email,cm_phone,reseller_rep\n" +
		"ANN-1," + day(10) + ",Ann Customer One,Revit,Cee One,cm1@customer.example,+44 1632 960001,Ann Rep\n" +
		"ANN-2," + day(-3) + ",Ann Customer Two,Revit,Cee Two,cm2@customer.example,+44 1632 960002,ann rep\n" +
		"BOB-1," + day(20) + ",Bob Customer One,AutoCAD,Cee Three,cm3@customer.example,+44 1632 960003,Bob Rep\n" +
		"NOREP-1," + day(15) + ",Nobody's Customer,AutoCAD,Cee Four,cm4@customer.example,+44 1632 960004,\n" +
		"FAR-1," + day(200) + ",Far Customer,AutoCAD,Cee Five,cm5@customer.example,+44 1632 960005,Ann Rep\n"
	if r := s.CLIInput(t, csv, "import", "-"); r.Code != 0 {
		t.Fatalf("import: %+v", r)
	}
	lists := func(d string) map[string][]string {
		out := map[string][]string{}
		for _, m := range relay.Messages() {
			msg, err := m.Parse()
			if err != nil {
				t.Fatal(err)
			}
			id := msg.Header.Get("X-Renewals-Morning-List")
			if id == "" || !strings.HasSuffix(id, d) {
				continue
			}
			if msg.Header.Get("X-Renewal-Notice") != "" {
				t.Errorf("a morning list carries a notice key")
			}
			out[strings.Join(m.To, ",")] = append(out[strings.Join(m.To, ",")], string(m.Data))
		}
		return out
	}
	run := func(s *e2e.Server, d string) {
		t.Helper()
		if r := s.CLI(t, "run", "--as-of", d, "--wait"); r.Code != 0 {
			t.Fatalf("run --as-of %s: %+v", d, r)
		}
	}
	check := func(d string, want map[string][]string) {
		t.Helper()
		got := lists(d)
		if len(got) != len(want) {
			t.Errorf("%s: morning lists went to %d reps, want %d", d, len(got), len(want))
		}
		for to, ids := range want {
			if len(got[to]) != 1 {
				t.Errorf("%s: %s got %d morning lists, want 1", d, to, len(got[to]))
				continue
			}
			body := got[to][0]
			for _, id := range []string{"ANN-1", "ANN-2", "BOB-1", "NOREP-1", "FAR-1"} {
				listed := strings.Contains(body, "subscription "+id)
				if wanted := contains(ids, id); listed != wanted {
					t.Errorf("%s: %s's list shows %s: %v, want %v", d, to, id, listed, wanted)
				}
			}
		}
	}
	want := map[string][]string{"ann@reseller.example": {"ANN-1", "ANN-2"}, "bob@reseller.example": {"BOB-1"}}
	run(s, day(0))
	check(day(0), want)
	run(s, day(0))
	check(day(0), want)

	s.Stop(t)
	s = e2e.Start(t, e2e.Options{Env: env, DataDir: s.DataDir})
	run(s, day(0))
	check(day(0), want)

	run(s, day(1))
	check(day(1), want)
	run(s, day(3)) // Saturday
	check(day(3), nil)
	if !morning.Working(wed) || morning.Working(wed.AddDays(3)) || morning.Working(wed.AddDays(4)) {
		t.Errorf("Working: Wednesday should be, Saturday and Sunday should not")
	}
}

func weekday(d subscription.Date) string {
	t, _ := time.Parse("2006-01-02", d.String())
	return t.Weekday().String()
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
