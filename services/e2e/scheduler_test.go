package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"renewals/pkg/testenv"
	"renewals/services/api"
	"renewals/services/cli"
	"renewals/services/e2e"
)

// simSub is one subscription of the simulated portfolio, as the test writes
// it into an import file.
type simSub struct {
	ID, End, Status, CMName, CMEmail, Zone string
}

const simHeader = "subscription_id,end_date,status,cm_name,cm_email,pa_name,pa_email,sa_emails,timezone,product,locale\n"

func (x simSub) row() string {
	return fmt.Sprintf("%s,%s,%s,%s,%s,Admin %s,admin.%s@example.org,sa1.%s@example.org;sa2.%s@example.org,%s,CAD Suite,en-GB\n",
		x.ID, x.End, x.Status, x.CMName, x.CMEmail, x.ID, x.ID, x.ID, x.ID, x.Zone)
}

// yearPlan is a year of a reseller's portfolio: what is imported on which
// day, and the days on which no pass runs (the server was down).
type yearPlan struct {
	first, last time.Time
	imports     map[string][]simSub // by day, applied before that day's pass
	outage      map[string]bool
}

func simDay(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

func newYearPlan() yearPlan {
	p := yearPlan{first: simDay("2030-01-01"), last: simDay("2030-12-31"), imports: map[string][]simSub{}, outage: map[string]bool{}}
	zones := []string{"", "Europe/London", "America/Los_Angeles", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata"}
	cm := func(id string) (string, string) { return "Manager " + id, "cm." + id + "@customer.example" }
	sub := func(id, end, status string, zone int) simSub {
		n, e := cm(id)
		return simSub{ID: id, End: end, Status: status, CMName: n, CMEmail: e, Zone: zones[zone%len(zones)]}
	}
	var initial []simSub
	// Plain subscriptions, ending every 19 days from late January into next
	// year, in every zone.
	for i := range 20 {
		initial = append(initial, sub(fmt.Sprintf("plain%02d", i), simDay("2030-01-20").AddDate(0, 0, 19*i).Format(time.DateOnly), "active", i))
	}
	noCM := sub("nocm", "2030-05-15", "active", 1)
	noCM.CMName, noCM.CMEmail = "", ""
	initial = append(initial,
		noCM,
		sub("renew1", "2030-03-31", "active", 2),   // renewed after its 30-day notice
		sub("renew2", "2030-06-30", "active", 3),   // renewed after its 90-day notice
		sub("cancel", "2030-05-31", "active", 4),   // cancelled after its 90-day notice
		sub("rip", "2030-07-31", "active", 5),      // renewal in progress, then active again
		sub("cmchange", "2030-09-30", "active", 1), // new contract manager before the 45-day notice
		sub("cancelled0", "2030-04-30", "cancelled", 2),
		sub("rip0", "2030-08-31", "renewal_in_progress", 3),
		sub("past", "2029-12-31", "active", 0),
		sub("skip45", "2030-03-30", "active", 5), // its whole 45-day stage falls in the first outage
	)
	p.imports["2030-01-01"] = initial
	p.imports["2030-03-20"] = []simSub{sub("renew1", "2030-12-31", "active", 2)}
	p.imports["2030-04-01"] = []simSub{sub("cancel", "2030-05-31", "cancelled", 4)}
	p.imports["2030-04-20"] = []simSub{sub("renew2", "2031-06-30", "active", 3)}
	p.imports["2030-05-20"] = []simSub{sub("rip", "2030-07-31", "renewal_in_progress", 5)}
	p.imports["2030-07-05"] = []simSub{sub("rip", "2030-07-31", "active", 5)}
	changed := sub("cmchange", "2030-09-30", "active", 1)
	changed.CMName, changed.CMEmail = "Successor Manager", "successor.cmchange@customer.example"
	p.imports["2030-08-01"] = []simSub{changed, sub("late", "2030-09-30", "active", 4)} // late: first seen 60 days out
	// Outages of up to 20 days; the first swallows whole 45-day stages.
	for _, o := range []struct {
		from string
		days int
	}{{"2030-02-10", 20}, {"2030-06-05", 15}, {"2030-10-20", 20}, {"2030-12-10", 3}} {
		for i := range o.days {
			p.outage[simDay(o.from).AddDate(0, 0, i).Format(time.DateOnly)] = true
		}
	}
	return p
}

// expected applies the documented due rule to the plan, independently of
// the service's code: on each day a pass runs, an active subscription with
// 0 <= days left gets the notice of its current stage (the smallest of 30,
// 45, 90 not below days left) unless it was sent before for that term; it
// goes to the contract manager of that day, and only when there is one. It
// returns, per notice key, the recipient, and per day the emails sent.
func (p yearPlan) expected() (map[string]string, map[string]int) {
	portfolio := map[string]simSub{}
	want := map[string]string{}
	perDay := map[string]int{}
	for d := p.first; !d.After(p.last); d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		for _, x := range p.imports[day] {
			portfolio[x.ID] = x
		}
		if p.outage[day] {
			continue
		}
		for _, x := range portfolio {
			if x.Status != "active" {
				continue
			}
			left := int(simDay(x.End).Sub(d).Hours() / 24)
			stage := 0
			for _, m := range []int{30, 45, 90} {
				if left >= 0 && left <= m {
					stage = m
					break
				}
			}
			if stage == 0 {
				continue
			}
			key := fmt.Sprintf("%s:%s:%d", x.ID, x.End, stage)
			if _, sent := want[key]; sent || x.CMEmail == "" {
				continue
			}
			want[key] = x.CMEmail
			perDay[day]++
		}
	}
	return want, perDay
}

// TestYearOfDailyPasses runs a year of daily `run --as-of DAY --wait` passes
// through the CLI, the API, the embedded NATS and the notifier into an
// in-process SMTP server, once on the embedded key-value store and once on
// Redis, over a portfolio with renewals, cancellations, a renewal in
// progress, a new contract manager, a subscription first seen inside its
// window, one without a contract manager, subscriptions in other zones and
// outages of up to 20 days. The emails received must be exactly the
// expected (notice key, recipient) set: none missing, none extra, each once,
// each to the contract manager only.
func TestYearOfDailyPasses(t *testing.T) {
	for _, backend := range []string{"kv", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			smtp := testenv.SMTP(t)
			env := map[string]string{"RENEWALS_SMTP_URL": smtp.URL()}
			if backend == "redis" {
				env["RENEWALS_REDIS_URL"] = testenv.StartRedis(t).URL
			}
			s := e2e.Start(t, e2e.Options{Env: env})
			plan := newYearPlan()
			want, wantPerDay := plan.expected()
			checkPlan(t, want)
			dir := t.TempDir()
			var personal []string
			passes := 0
			start := time.Now()
			for d := plan.first; !d.After(plan.last); d = d.AddDate(0, 0, 1) {
				day := d.Format(time.DateOnly)
				if subs := plan.imports[day]; len(subs) > 0 {
					var b strings.Builder
					b.WriteString(simHeader)
					for _, x := range subs {
						b.WriteString(x.row())
						personal = append(personal, x.CMName, x.CMEmail)
					}
					path := filepath.Join(dir, day+".csv")
					if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
						t.Fatal(err)
					}
					if r := s.CLI(t, "import", path); r.Code != 0 {
						t.Fatalf("%s: import exited %d: %s%s", day, r.Code, r.Stdout, r.Stderr)
					}
				}
				if plan.outage[day] {
					continue
				}
				r := s.CLI(t, "run", "--as-of", day, "--wait", "--json")
				if r.Code != 0 {
					t.Fatalf("%s: run exited %d: %s", day, r.Code, r.Stderr)
				}
				passes++
				var res api.RunResponse
				if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
					t.Fatalf("%s: run output: %v\n%s", day, err, r.Stdout)
				}
				if got := res.Outcomes["sent"]; got != wantPerDay[day] {
					t.Errorf("%s: %d sent, want %d (result %+v)", day, got, wantPerDay[day], res)
				}
			}
			t.Logf("%s: %d passes in %v, %d emails expected", backend, passes, time.Since(start).Round(time.Millisecond), len(want))

			got := map[string][]string{}
			for _, m := range smtp.Messages() {
				msg, err := m.Parse()
				if err != nil {
					t.Fatal(err)
				}
				key := msg.Header.Get("X-Renewal-Notice")
				if len(m.To) != 1 || msg.Header.Get("To") == "" || !strings.Contains(msg.Header.Get("To"), m.To[0]) {
					t.Errorf("%s: envelope to %v, header To %q: want the contract manager alone", key, m.To, msg.Header.Get("To"))
				}
				for _, h := range []string{"Cc", "Bcc"} {
					if v := msg.Header.Get(h); v != "" {
						t.Errorf("%s: %s: %s", key, h, v)
					}
				}
				got[key] = append(got[key], m.To...)
			}
			for _, k := range slices.Sorted(maps.Keys(want)) {
				if rcpts := got[k]; len(rcpts) != 1 || rcpts[0] != want[k] {
					t.Errorf("notice %s went to %v, want exactly once to %s", k, rcpts, want[k])
				}
			}
			for _, k := range slices.Sorted(maps.Keys(got)) {
				if _, ok := want[k]; !ok {
					t.Errorf("notice %s went to %v, want no such email", k, got[k])
				}
			}
			logs := s.Logs()
			for _, p := range personal {
				if p != "" && strings.Contains(logs, p) {
					t.Errorf("the logs hold personal data %q", p)
				}
			}
		})
	}
}

// checkPlan makes sure the plan holds the cases the test is for, so that a
// change to it cannot quietly leave one out.
func checkPlan(t *testing.T, want map[string]string) {
	t.Helper()
	const successor = "successor.cmchange@customer.example"
	for key, to := range map[string]string{
		"cmchange:2030-09-30:90": "cm.cmchange@customer.example", // the old contract manager: the 90 only
		"cmchange:2030-09-30:45": successor, "cmchange:2030-09-30:30": successor,
		"late:2030-09-30:90":   "cm.late@customer.example", // first seen 60 days out: the 90 at once
		"late:2030-09-30:45":   "cm.late@customer.example",
		"skip45:2030-03-30:90": "cm.skip45@customer.example", "skip45:2030-03-30:45": "",
		"skip45:2030-03-30:30": "cm.skip45@customer.example", // after the outage: only the current stage
		"cancel:2030-05-31:90": "cm.cancel@customer.example", "cancel:2030-05-31:45": "", "cancel:2030-05-31:30": "",
		"renew1:2030-03-31:30": "cm.renew1@customer.example", "renew1:2030-12-31:90": "cm.renew1@customer.example",
		"renew1:2030-12-31:45": "cm.renew1@customer.example", "renew1:2030-12-31:30": "cm.renew1@customer.example",
		"renew2:2030-06-30:90": "cm.renew2@customer.example", "renew2:2030-06-30:45": "",
		"rip:2030-07-31:90": "cm.rip@customer.example", "rip:2030-07-31:45": "", "rip:2030-07-31:30": "cm.rip@customer.example",
		"nocm:2030-05-15:90": "", "cancelled0:2030-04-30:30": "", "rip0:2030-08-31:30": "", "past:2029-12-31:30": "",
	} {
		if want[key] != to {
			t.Fatalf("the plan expects %s to go to %q, want %q: fix the plan", key, want[key], to)
		}
	}
}

// TestServeRejectsBadZoneAndSchedule: an invalid RENEWALS_TIMEZONE or
// RENEWALS_SCHEDULE stops `serve` at once with exit status 2 and a message
// that names the variable and says what to use, never a silent UTC.
func TestServeRejectsBadZoneAndSchedule(t *testing.T) {
	tests := []struct {
		name, variable, value, want string
	}{
		{"unknown zone", "RENEWALS_TIMEZONE", "Mars/Olympus_Mons",
			`renewals serve: RENEWALS_TIMEZONE "Mars/Olympus_Mons" is not an IANA time zone: use a name such as Europe/London or UTC`},
		{"local zone", "RENEWALS_TIMEZONE", "Local",
			`renewals serve: RENEWALS_TIMEZONE "Local" is not an IANA time zone`},
		{"six fields", "RENEWALS_SCHEDULE", "0 0 6 * * *",
			`renewals serve: RENEWALS_SCHEDULE "0 0 6 * * *" is not a cron spec`},
		{"hour out of range", "RENEWALS_SCHEDULE", "0 25 * * *",
			`renewals serve: RENEWALS_SCHEDULE "0 25 * * *" is not a cron spec`},
		{"bad zone in the spec", "RENEWALS_SCHEDULE", "CRON_TZ=Nowhere/Else 0 6 * * *",
			`renewals serve: RENEWALS_SCHEDULE "CRON_TZ=Nowhere/Else 0 6 * * *" is not a cron spec`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{
				"RENEWALS_DATA_DIR":    dir,
				"RENEWALS_HTTP_ADDR":   fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
				"RENEWALS_NATS_LISTEN": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
				tt.variable:            tt.value,
			}
			var stdout, stderr strings.Builder
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			code := cliMain(ctx, []string{"serve"}, env, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), tt.want) {
				t.Fatalf("stderr:\n%s\nwant it to start with:\n%s", stderr.String(), tt.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n != 0 {
				t.Errorf("want one line on stderr, got %d:\n%s", n+1, stderr.String())
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("serve left %d entries in the data dir; it should stop before starting anything", len(entries))
			}
		})
	}
}

func cliMain(ctx context.Context, args []string, env map[string]string, stdout, stderr io.Writer) int {
	return cli.Main(ctx, args, cli.Env{
		Getenv: func(k string) string { return env[k] },
		Stdin:  strings.NewReader(""), Stdout: stdout, Stderr: stderr,
	})
}

// TestReplicasPassAtOnce: two servers share one NATS and one Redis, and
// `run --wait` is called on both at the same moment. Each notice is
// published once, one email goes per notice, and a pass run again later is
// stopped by the ledger: it finds every notice sent and publishes nothing.
func TestReplicasPassAtOnce(t *testing.T) {
	ns := testenv.NATS(t)
	smtp := testenv.SMTP(t)
	env := map[string]string{
		"RENEWALS_NATS_URL":  ns.ClientURL(),
		"RENEWALS_REDIS_URL": testenv.StartRedis(t).URL,
		"RENEWALS_SMTP_URL":  smtp.URL(),
	}
	a := e2e.Start(t, e2e.Options{Env: env})
	b := e2e.Start(t, e2e.Options{Env: env})

	const n = 40
	asOf := simDay("2030-05-01")
	var csv strings.Builder
	csv.WriteString(simHeader)
	want := map[string]string{}
	for i := range n {
		left := 1 + i*2 // 1 to 79 days left: every stage
		x := simSub{ID: fmt.Sprintf("rep%02d", i), End: asOf.AddDate(0, 0, left).Format(time.DateOnly), Status: "active",
			CMName: fmt.Sprintf("Manager %d", i), CMEmail: fmt.Sprintf("cm%02d@customer.example", i)}
		csv.WriteString(x.row())
		stage := 90
		if left <= 30 {
			stage = 30
		} else if left <= 45 {
			stage = 45
		}
		want[fmt.Sprintf("%s:%s:%d", x.ID, x.End, stage)] = x.CMEmail
	}
	path := filepath.Join(t.TempDir(), "portfolio.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := a.CLI(t, "import", path); r.Code != 0 {
		t.Fatalf("import exited %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}

	day := asOf.Format(time.DateOnly)
	results := make([]api.RunResponse, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, s := range []*e2e.Server{a, b} {
		wg.Go(func() {
			r := runJSON(s, day)
			if r.Code != 0 {
				errs[i] = fmt.Errorf("run on server %d exited %d: %s", i, r.Code, r.Stderr)
				return
			}
			errs[i] = json.Unmarshal([]byte(r.Stdout), &results[i])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range results {
		t.Logf("server %d: %d published, %d dropped by the stream as duplicates, %d found sent in the ledger", i, r.Published, r.Duplicates, r.AlreadySent)
	}
	published := results[0].Published + results[1].Published
	if published != n {
		t.Errorf("published %d + %d, want %d in all: %+v", results[0].Published, results[1].Published, n, results)
	}
	for i, r := range results {
		if r.Published+r.Duplicates+r.AlreadySent != n {
			t.Errorf("server %d: %d published, %d duplicates, %d already sent; want %d together", i, r.Published, r.Duplicates, r.AlreadySent, n)
		}
	}
	checkEmails(t, smtp.Messages(), want)

	again := runJSON(a, day)
	var res api.RunResponse
	if again.Code != 0 || json.Unmarshal([]byte(again.Stdout), &res) != nil {
		t.Fatalf("re-run exited %d: %s%s", again.Code, again.Stdout, again.Stderr)
	}
	if res.AlreadySent != n || res.Published != 0 || res.Duplicates != 0 {
		t.Errorf("re-run: %d already sent, %d published, %d duplicates; want %d, 0, 0", res.AlreadySent, res.Published, res.Duplicates, n)
	}
	checkEmails(t, smtp.Messages(), want)
}

// runJSON runs `run --as-of day --wait --json` against s. It is safe from
// any goroutine: it reports instead of failing the test.
func runJSON(s *e2e.Server, day string) e2e.Result {
	var stdout, stderr strings.Builder
	code := cliMain(context.Background(), []string{"run", "--as-of", day, "--wait", "--json"}, map[string]string{
		"RENEWALS_SERVER": s.URL, "RENEWALS_DATA_DIR": s.DataDir,
	}, &stdout, &stderr)
	return e2e.Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

// checkEmails asserts that msgs are exactly one email per notice key in
// want, each to its contract manager alone.
func checkEmails(t *testing.T, msgs []testenv.SMTPMessage, want map[string]string) {
	t.Helper()
	got := map[string][]string{}
	for _, m := range msgs {
		msg, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		key := msg.Header.Get("X-Renewal-Notice")
		got[key] = append(got[key], m.To...)
	}
	for k, to := range want {
		if rcpts := got[k]; len(rcpts) != 1 || rcpts[0] != to {
			t.Errorf("notice %s went to %v, want exactly once to %s", k, rcpts, to)
		}
	}
	for k, rcpts := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("notice %s went to %v, want no such email", k, rcpts)
		}
	}
}
