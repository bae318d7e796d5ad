package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"renewals/pkg/natsbus"
	"renewals/services/e2e"
)

// readmePermissions returns the nats-server.conf block of users and
// permissions that README.md gives an operator to paste.
func readmePermissions(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```conf\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.HasPrefix(block, "authorization {") {
			return block
		}
	}
	t.Fatal("README.md has no ```conf block starting with authorization {")
	return ""
}

// violationLog keeps the errors a nats-server logs: permission violations
// among them.
type violationLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *violationLog) Noticef(string, ...any) {}
func (l *violationLog) Warnf(string, ...any)   {}
func (l *violationLog) Fatalf(string, ...any)  {}
func (l *violationLog) Debugf(string, ...any)  {}
func (l *violationLog) Tracef(string, ...any)  {}
func (l *violationLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, v...))
}

func (l *violationLog) violations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.errs {
		if strings.Contains(e, "Violation") {
			out = append(out, e)
		}
	}
	return out
}

// TestExternalNATSWithDocumentedPermissions runs the whole service, with its
// state in the key-value buckets, against a nats-server configured with
// exactly the users and permissions that README.md documents: an import, a
// pass that sends, the ledger, forecast, call list, erasure, the event
// stream, /metrics and /readyz, and a CRM's ingest request, while a
// dashboard follows the events. The server must log no permissions
// violation, and the README's dashboard user must be the embedded server's.
func TestExternalNATSWithDocumentedPermissions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats-server.conf")
	pw := map[string]string{"renewals": "service-pw", "dashboard": "dashboard-pw", "crm": "crm-pw"}
	vars := fmt.Sprintf("RENEWALS_NATS_PASSWORD: %q\nDASHBOARD_NATS_PASSWORD: %q\nCRM_NATS_PASSWORD: %q\n", pw["renewals"], pw["dashboard"], pw["crm"])
	if err := os.WriteFile(conf, []byte(vars+readmePermissions(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("README.md's permissions block: %v", err)
	}
	for _, u := range opts.Users {
		if u.Username == natsbus.DashboardUser && !reflect.DeepEqual(u.Permissions, natsbus.DashboardPermissions()) {
			g, _ := json.Marshal(u.Permissions)
			w, _ := json.Marshal(natsbus.DashboardPermissions())
			t.Errorf("README.md's dashboard user may %s; the embedded server's %s", g, w)
		}
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, filepath.Join(dir, "jetstream")
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	log := &violationLog{}
	ns.SetLoggerV2(log, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(ns.Shutdown)
	as := func(user string) string {
		u, _ := url.Parse(ns.ClientURL())
		u.User = url.UserPassword(user, pw[user])
		return u.String()
	}

	dash, err := nats.Connect(as("dashboard"))
	if err != nil {
		t.Fatal(err)
	}
	defer dash.Close()
	upserts, err := dash.SubscribeSync("renewals.subscription.>")
	if err != nil {
		t.Fatal(err)
	}
	sent, err := dash.SubscribeSync("renewals.notice.sent")
	if err != nil {
		t.Fatal(err)
	}
	if err := dash.Flush(); err != nil {
		t.Fatal(err)
	}

	s := e2e.Start(t, e2e.Options{Env: map[string]string{"RENEWALS_NATS_URL": as("renewals")}})
	importSample(t, s)
	if got := runPass(t, s, "2026-12-01"); got["sent"] != 8 || got["undeliverable"] != 1 {
		t.Errorf("pass of 2026-12-01: outcomes %v, want 8 sent and 1 undeliverable", got)
	}
	for _, args := range [][]string{
		{"notices", "--subscription", "110001000008"},
		{"forecast", "--from", "2026-12-01", "--days", "60"},
		{"calllist"},
		{"erase", "110001000003"},
	} {
		if r := s.CLI(t, args...); r.Code != 0 {
			t.Errorf("%v: exit %d\n%s%s", args, r.Code, r.Stdout, r.Stderr)
		}
	}

	// The API's event stream replays from the stream's start.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/v1/events?from_seq=1", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/events?from_seq=1: %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Errorf("GET /api/v1/events?from_seq=1: no event: %v", err)
			break
		}
		if strings.HasPrefix(line, "id: ") {
			break
		}
	}
	resp.Body.Close()
	for _, path := range []string{"/metrics", "/readyz"} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}

	// A CRM sends a record and gets its result.
	crm, err := nats.Connect(as("crm"), nats.CustomInboxPrefix("_INBOX_crm"))
	if err != nil {
		t.Fatal(err)
	}
	defer crm.Close()
	reply, err := crm.Request("renewals.ingest.subscription", []byte(`{"subscription_id":"130000000042","end_date":"2027-06-30"}`), 10*time.Second)
	if err != nil {
		t.Fatalf("CRM ingest request: %v", err)
	}
	if !strings.Contains(string(reply.Data), `"change":"created"`) {
		t.Errorf("CRM ingest reply: %s", reply.Data)
	}

	// The dashboard saw the events.
	for _, sub := range []*nats.Subscription{upserts, sent} {
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Errorf("dashboard on %s: %v", sub.Subject, err)
		}
	}

	s.Stop(t)
	if v := log.violations(); len(v) > 0 {
		t.Errorf("nats-server logged %d permissions violations under README.md's block:\n%s", len(v), strings.Join(v, "\n"))
	}
}
