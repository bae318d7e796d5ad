package e2e_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"renewals/pkg/natsbus"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// samplePath is the sample data that the README walks through.
func samplePath(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "sample", "subscriptions.csv")
}

// sampleContacts reads the sample: subscription id -> its row, by column.
func sampleContacts(t *testing.T) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(samplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, r := range recs[1:] {
		row := map[string]string{}
		for i, h := range recs[0] {
			row[h] = r[i]
		}
		out[row["subscription_id"]] = row
	}
	return out
}

// On 2026-12-01 the sample has nine notices due: eight to a contract manager
// and one (110001000007, no contract manager) undeliverable. Worked out by
// hand from the due rule: 0001 (90 days left: the 90-day notice), 0002 (75:
// 90), 0003 (45: 45), 0004 (35: 45), 0005 (30: 30), 0006 (19: 30), 0008 (62:
// 90, multi-user), 0013 (52 in Los Angeles: 90), 0007 (40: 45, no CM); 0009
// renewal in progress, 0010 cancelled, 0011 not due (211), 0012 lapsed.
var sampleSent = map[string]string{
	"110001000001": "110001000001:2027-03-01:90",
	"110001000002": "110001000002:2027-02-14:90",
	"110001000003": "110001000003:2027-01-15:45",
	"110001000004": "110001000004:2027-01-05:45",
	"110001000005": "110001000005:2026-12-31:30",
	"110001000006": "110001000006:2026-12-20:30",
	"110001000008": "110001000008:2027-02-01:90",
	"110001000013": "110001000013:2027-01-22:90",
}

// backend is a server under test with the way to read what it sent.
type backend struct {
	name  string
	srv   *e2e.Server
	smtp  *testenv.SMTPServer // nil: the embedded outbox
	redis *testenv.Redis      // nil: the embedded JetStream KV store
	nats  string              // the embedded NATS server's URL
}

// mail is one sent email: its envelope recipients (the To header for the
// outbox, which has no envelope) and parsed message.
type sentMail struct {
	rcpts []string
	raw   []byte
}

func (b *backend) sent(t *testing.T) []sentMail {
	t.Helper()
	var out []sentMail
	if b.smtp != nil {
		for _, m := range b.smtp.Messages() {
			out = append(out, sentMail{m.To, m.Data})
		}
		return out
	}
	for _, raw := range b.srv.Outbox(t) {
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		to, err := m.Header.AddressList("To")
		if err != nil {
			t.Fatal(err)
		}
		var rcpts []string
		for _, a := range to {
			rcpts = append(rcpts, a.Address)
		}
		out = append(out, sentMail{rcpts, raw})
	}
	return out
}

// eachBackend runs fn on embedded defaults and again with Redis and SMTP.
func eachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	for _, name := range []string{"embedded", "redis+smtp"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := &backend{name: name}
			env := map[string]string{"RENEWALS_NATS_LISTEN": "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}
			if name != "embedded" {
				b.redis = testenv.StartRedis(t)
				b.smtp = testenv.SMTP(t)
				env["RENEWALS_REDIS_URL"] = b.redis.URL
				env["RENEWALS_SMTP_URL"] = b.smtp.URL()
			}
			b.srv = e2e.Start(t, e2e.Options{Env: env})
			b.nats = b.srv.NATSURLAs(t, natsbus.ServiceUser)
			fn(t, b)
		})
	}
}

func runPass(t *testing.T, s *e2e.Server, asOf string) map[string]int {
	t.Helper()
	r := s.CLI(t, "run", "--as-of", asOf, "--wait", "--json")
	if r.Code != 0 {
		t.Fatalf("run --as-of %s: exit %d\n%s%s", asOf, r.Code, r.Stdout, r.Stderr)
	}
	var res struct {
		Published int            `json:"published"`
		Outcomes  map[string]int `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("run --json: %v\n%s", err, r.Stdout)
	}
	return res.Outcomes
}

// waitStartupPass waits for the pass that every start runs, for the real
// today: run after an import, it would send that day's notices as well.
func waitStartupPass(t *testing.T, s *e2e.Server) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "the start-up scheduler pass", func() bool {
		return strings.Contains(s.Logs(), `"msg":"scheduler pass`)
	})
}

func importSample(t *testing.T, s *e2e.Server) {
	t.Helper()
	waitStartupPass(t, s)
	r := s.CLI(t, "import", samplePath(t))
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "13 rows: 13 created, 0 updated, 0 unchanged, 0 rejected") {
		t.Fatalf("import sample: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

func TestSampleEndToEnd(t *testing.T) {
	rows := sampleContacts(t)
	eachBackend(t, func(t *testing.T, b *backend) {
		s := b.srv
		importSample(t, s)
		if got := runPass(t, s, "2026-12-01"); got["sent"] != 8 || got["undeliverable"] != 1 || got["failed"] != 0 || got["skipped"] != 0 {
			t.Fatalf("outcomes %v, want 8 sent and 1 undeliverable", got)
		}
		msgs := b.sent(t)
		if len(msgs) != 8 {
			t.Fatalf("%d emails, want 8", len(msgs))
		}
		seen := map[string]bool{}
		for _, m := range msgs {
			checkNotice(t, m, rows, seen)
		}
		if len(seen) != len(sampleSent) {
			t.Errorf("notices sent %v, want %v", seen, sampleSent)
		}

		// A second pass for the same day sends nothing new.
		if got := runPass(t, s, "2026-12-01"); got["sent"] != 0 {
			t.Errorf("second pass outcomes %v, want nothing sent", got)
		}
		if n := len(b.sent(t)); n != 8 {
			t.Errorf("%d emails after the second pass, want still 8", n)
		}
		// The whole ledger of the renewal period: 8 sent to the contract
		// manager, 1 undeliverable.
		r := s.CLI(t, "notices", "--as-of", "2026-12-01")
		if r.Code != 0 || strings.Count(r.Stdout, "sent ") != 8 || strings.Count(r.Stdout, "to contract manager") != 8 ||
			strings.Count(r.Stdout, "undeliverable") != 1 || strings.Count(r.Stdout, "\n") != 9 {
			t.Errorf("renewals notices --as-of 2026-12-01 = %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
	})
}

// checkNotice holds one email to the notice rules: one recipient, the
// subscription's contract manager; the X-Renewal-Notice header; a text and
// an HTML part.
func checkNotice(t *testing.T, m sentMail, rows map[string]map[string]string, seen map[string]bool) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.raw))
	if err != nil {
		t.Fatal(err)
	}
	key := msg.Header.Get("X-Renewal-Notice")
	id, _, _ := strings.Cut(key, ":")
	if want, ok := sampleSent[id]; !ok || key != want {
		t.Errorf("X-Renewal-Notice %q: not one of the due notices", key)
		return
	}
	if seen[key] {
		t.Errorf("notice %s sent twice", key)
	}
	seen[key] = true
	if cm := rows[id]["cm_email"]; len(m.rcpts) != 1 || !strings.EqualFold(m.rcpts[0], cm) {
		t.Errorf("notice %s went to %v, want only the contract manager %s", key, m.rcpts, cm)
	}
	for _, h := range []string{"Cc", "Bcc"} {
		if v := msg.Header.Get(h); v != "" {
			t.Errorf("notice %s has %s: %s", key, h, v)
		}
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		t.Errorf("notice %s: Content-Type %q, want multipart", key, msg.Header.Get("Content-Type"))
		return
	}
	types := map[string]bool{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("notice %s: %v", key, err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types[pt] = true
	}
	if !types["text/plain"] || !types["text/html"] {
		t.Errorf("notice %s has parts %v, want text/plain and text/html", key, types)
	}
}

func TestImportRejectsBadRowKeepsGood(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	waitStartupPass(t, s)
	path := filepath.Join(t.TempDir(), "subs.csv")
	data := "subscription_id,end_date,cm_email\n" +
		"120000000001,2027-01-31,a@example.com\n" +
		"120000000002,2027-02-30,b@example.com\n" +
		"120000000003,2027-02-28,c@example.com\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.CLI(t, "import", path)
	if r.Code != 1 {
		t.Fatalf("import exit %d, want 1\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "3 rows: 2 created, 0 updated, 0 unchanged, 1 rejected") ||
		!strings.Contains(r.Stdout, `line 3: end_date: "2027-02-30"`) {
		t.Errorf("report does not name line 3 and its reason:\n%s", r.Stdout)
	}
	for _, id := range []string{"120000000001", "120000000003"} {
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/"+id, nil, nil); code != http.StatusOK {
			t.Errorf("GET %s: %d, want 200: a good row was not kept", id, code)
		}
	}
	if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/120000000002", nil, nil); code != http.StatusNotFound {
		t.Errorf("GET the rejected row's id: %d, want 404", code)
	}
}

func TestHealthAuthAndToken(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/api/v1/forecast", "/api/v1/subscriptions/110001000001", "/api/v1/notices"} {
		for _, auth := range []string{"", "Bearer wrong"} {
			req, _ := http.NewRequest(http.MethodGet, s.URL+p, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s with %q: %d, want 401", p, auth, resp.StatusCode)
			}
		}
	}
	st, err := os.Stat(filepath.Join(s.DataDir, "api-token"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("api-token has mode %o, want 600", mode)
	}
}

// TestErasure erases a subscription that is due and checks, on each store,
// that a pass sends nothing for it, that the erased event is published,
// that GET answers 404, and that no key, value, file or stream message
// holds the contract manager's email or name.
func TestErasure(t *testing.T) {
	rows := sampleContacts(t)
	const id = "110001000003"
	eachBackend(t, func(t *testing.T, b *backend) {
		s := b.srv
		importSample(t, s)
		nc, err := nats.Connect(b.nats)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		erased, err := nc.SubscribeSync("renewals.subscription.erased")
		if err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		if r := s.CLI(t, "erase", id); r.Code != 0 {
			t.Fatalf("erase: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		m, err := erased.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no renewals.subscription.erased event: %v", err)
		}
		if !bytes.Contains(m.Data, []byte(id)) {
			t.Errorf("erased event does not name %s: %s", id, m.Data)
		}
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/"+id, nil, nil); code != http.StatusNotFound {
			t.Errorf("GET after erase: %d, want 404", code)
		}
		if got := runPass(t, s, "2026-12-01"); got["sent"] != 7 {
			t.Errorf("outcomes %v after erasing one due subscription, want 7 sent\n%s", got, s.Logs())
		}
		for _, m := range b.sent(t) {
			if bytes.Contains(m.raw, []byte("X-Renewal-Notice: "+id)) {
				t.Errorf("a notice went out for the erased subscription")
			}
		}
		personal := []string{rows[id]["cm_email"], rows[id]["cm_name"]}
		checkNoPersonal(t, b, nc, personal)
	})
}

// checkNoPersonal searches everything the server holds: for Redis every key
// and value, for the embedded store every file under <data dir>/nats; and
// for both every message of every JetStream stream.
func checkNoPersonal(t *testing.T, b *backend, nc *nats.Conn, personal []string) {
	t.Helper()
	found := func(where string, data []byte) {
		for _, p := range personal {
			if bytes.Contains(data, []byte(p)) {
				t.Errorf("%s still holds %q", where, p)
			}
		}
	}
	ctx := context.Background()
	if b.redis != nil {
		c := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
		defer c.Close()
		keys, err := c.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			found("redis key", []byte(k))
			v, err := c.Dump(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			found("redis value of "+k, []byte(v))
		}
	} else {
		err := filepath.WalkDir(filepath.Join(b.srv.DataDir, "nats"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			found("file "+p, data)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted
			}
			found(fmt.Sprintf("stream %s message %d (%s)", name, seq, m.Subject), append([]byte(m.Subject), m.Data...))
		}
	}
}

// TestErasureWhileInFlight erases a subscription whose notice the SMTP
// server keeps deferring (451): once erased, the notice is skipped and no
// email goes out for it, even after the server accepts mail again.
func TestErasureWhileInFlight(t *testing.T) {
	rows := sampleContacts(t)
	const id = "110001000005"
	cm := rows[id]["cm_email"]
	b := &backend{redis: testenv.StartRedis(t), smtp: testenv.SMTP(t)}
	b.smtp.Inject(testenv.Fault{Rcpt: cm, Stage: testenv.StageRcpt, Code: 451})
	listen := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	b.srv = e2e.Start(t, e2e.Options{Env: map[string]string{
		"RENEWALS_REDIS_URL": b.redis.URL, "RENEWALS_SMTP_URL": b.smtp.URL(), "RENEWALS_NATS_LISTEN": listen,
	}})
	s := b.srv
	importSample(t, s)
	nc, err := nats.Connect(s.NATSURLAs(t, natsbus.ServiceUser))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	skipped, err := nc.SubscribeSync("renewals.notice.skipped")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	if r := s.CLI(t, "run", "--as-of", "2026-12-01"); r.Code != 0 {
		t.Fatalf("run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Wait until the notice was attempted and deferred: the ledger counts it.
	testenv.Eventually(t, 20*time.Second, "a deferred attempt of "+id, func() bool {
		var got struct {
			Notices []struct {
				Attempts int    `json:"attempts"`
				Outcome  string `json:"outcome"`
			} `json:"notices"`
		}
		if s.API(t, http.MethodGet, "/api/v1/notices?subscription_id="+id, nil, &got) != http.StatusOK {
			return false
		}
		return len(got.Notices) == 1 && got.Notices[0].Attempts >= 1 && got.Notices[0].Outcome == ""
	})
	if r := s.CLI(t, "erase", id); r.Code != 0 {
		t.Fatalf("erase: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	b.smtp.ClearFaults()
	m, err := skipped.NextMsg(60 * time.Second)
	if err != nil {
		t.Fatalf("no skipped event for the erased in-flight notice: %v", err)
	}
	if !bytes.Contains(m.Data, []byte(id)) {
		t.Errorf("skipped event is not the erased subscription's: %s", m.Data)
	}
	for _, m := range b.smtp.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to, cm) {
				t.Errorf("an email went to the erased subscription's contract manager")
			}
		}
	}
	checkNoPersonal(t, b, nc, []string{cm, rows[id]["cm_name"]})
}
