package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// TestEventsAreCloudEventsWithoutPersonalData subscribes with the plain NATS
// client to every outbound subject during a run that imports, sends, bounces,
// finds no contract manager, changes and erases subscriptions, and checks
// that each event is a CloudEvents 1.0 structured event with the required
// attributes (and time, subject, datacontenttype), of the type its subject
// says, holding none of the portfolio's personal data.
//
// With RENEWALS_CAPTURE_EVENTS=dir it writes one event of each type there,
// as docs/events.md shows them.
func TestEventsAreCloudEventsWithoutPersonalData(t *testing.T) {
	smtp := testenv.SMTP(t)
	smtp.Inject(testenv.Fault{Rcpt: bouncedAddress, Stage: testenv.StageRcpt, Code: 550})
	natsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	s := Start(t, Options{Env: map[string]string{"RENEWALS_SMTP_URL": smtp.URL(), "RENEWALS_NATS_LISTEN": natsAddr}})

	nc, err := nats.Connect(s.NATSURLAs(t, natsbus.ServiceUser))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var (
		mu   sync.Mutex
		msgs []*nats.Msg
	)
	seen := make(chan struct{}, 1)
	sub, err := nc.Subscribe("renewals.>", func(m *nats.Msg) {
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
		select {
		case seen <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	today := subscription.Today(time.Now(), time.UTC)
	rows := scenario(today)
	if r := s.CLI(t, "import", writePortfolio(t, rows)); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.CLI(t, "run", "--as-of", today.String(), "--wait"); r.Code != 0 {
		t.Fatalf("run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	// waitCalllist waits for a renewals.calllist.updated of id that ok accepts.
	waitCalllist := func(id string, ok func(event.CalllistUpdated) bool, what string) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			mu.Lock()
			done := false
			for _, m := range msgs {
				var d event.CalllistUpdated
				if m.Subject == event.SubjectCalllist && json.Unmarshal(m.Data, &struct {
					Data *event.CalllistUpdated `json:"data"`
				}{&d}) == nil && d.SubscriptionID == id && ok(d) {
					done = true
				}
			}
			mu.Unlock()
			if done {
				return
			}
			select {
			case <-seen:
			case <-deadline:
				t.Fatalf("no renewals.calllist.updated for %s within 60s", what)
			}
		}
	}
	// The call list reads events on its own consumer, so it may lag the
	// CLI. A subscription it first hears of after its erasure was never on
	// the list and gets no update, so the erasure waits until it is listed.
	waitCalllist(rows[3].id, func(d event.CalllistUpdated) bool { return d.OnList }, "the subscription to be erased")

	// A change that takes a subscription off the list, then an erasure.
	changed := rows[4]
	changed.status = "renewal_in_progress"
	if r := s.CLI(t, "import", writePortfolio(t, []row{changed})); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.CLI(t, "erase", rows[3].id); r.Code != 0 {
		t.Fatalf("erase: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	// The call list's answer to the erasure is the last event.
	byType := map[string][]byte{}
	waitCalllist(rows[3].id, func(d event.CalllistUpdated) bool { return d.Reason == "erased" }, "the erased subscription")

	mu.Lock()
	defer mu.Unlock()
	secrets := personal(rows)
	checked := 0
	for _, m := range msgs {
		switch {
		case m.Subject == event.SubjectIngest:
			continue // inbound, not an event
		}
		checked++
		var ce map[string]any
		if err := json.Unmarshal(m.Data, &ce); err != nil {
			t.Errorf("%s: not JSON: %v", m.Subject, err)
			continue
		}
		for _, attr := range []string{"specversion", "id", "source", "type", "time", "subject", "datacontenttype"} {
			if v, _ := ce[attr].(string); v == "" {
				t.Errorf("%s: CloudEvents attribute %q missing or empty", m.Subject, attr)
			}
		}
		if ce["specversion"] != "1.0" || ce["datacontenttype"] != "application/json" || ce["type"] != event.TypeOf(m.Subject) {
			t.Errorf("%s: specversion %v, datacontenttype %v, type %v", m.Subject, ce["specversion"], ce["datacontenttype"], ce["type"])
		}
		if ts, _ := ce["time"].(string); ts != "" {
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("%s: time %q is not RFC 3339", m.Subject, ts)
			}
		}
		if _, ok := ce["data"].(map[string]any); !ok {
			t.Errorf("%s: no data object", m.Subject)
		}
		low := strings.ToLower(string(m.Data))
		for _, p := range secrets {
			if strings.Contains(low, strings.ToLower(p)) {
				t.Errorf("%s: event holds personal data %q", m.Subject, p)
			}
		}
		typ, _ := ce["type"].(string)
		if _, ok := byType[typ]; !ok {
			byType[typ] = m.Data
		}
	}
	for _, typ := range []string{
		"renewals.notice.due.v1", "renewals.notice.sent.v1", "renewals.notice.failed.v1", "renewals.notice.undeliverable.v1",
		"renewals.subscription.upserted.v1", "renewals.subscription.erased.v1", "renewals.calllist.updated.v1",
	} {
		if _, ok := byType[typ]; !ok {
			t.Errorf("no %s event seen", typ)
		}
	}
	t.Logf("%d events checked, %d types", checked, len(byType))
	if dir := os.Getenv("RENEWALS_CAPTURE_EVENTS"); dir != "" {
		for typ, b := range byType {
			var v any
			_ = json.Unmarshal(b, &v)
			pretty, _ := json.MarshalIndent(v, "", "  ")
			if err := os.WriteFile(filepath.Join(dir, typ+".json"), pretty, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id, event, data string
	at              time.Time
}

// sseClient reads a server-sent event stream on its own goroutine.
type sseClient struct {
	resp     *http.Response
	events   chan sseEvent
	comments chan string
}

func openSSE(t *testing.T, s *Server, lastID string) *sseClient {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("GET /api/v1/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 64), comments: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.id != "" || ev.data != "" {
					ev.at = time.Now()
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				select {
				case c.comments <- line:
				default:
				}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
		close(c.events)
	}()
	t.Cleanup(c.close)
	select {
	case <-c.comments: // ": connected": the consumer is in place
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream sent no first comment within 5s")
	}
	return c
}

func (c *sseClient) close() { c.resp.Body.Close() }

func (c *sseClient) next(t *testing.T, within time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
	}
	return sseEvent{}
}

// TestEventStreamDeliversAndResumes checks GET /api/v1/events: an event
// reaches a connected client within a second of its publication, with the
// stream sequence as id and the CloudEvents type as event; a client that
// reconnects with Last-Event-ID gets every event published while it was
// away, in order, none missing; and the endpoint wants the token.
func TestEventStreamDeliversAndResumes(t *testing.T) {
	natsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	s := Start(t, Options{Env: map[string]string{"RENEWALS_NATS_LISTEN": natsAddr}})
	_, js := testenv.Connect(t, s.NATSURLAs(t, natsbus.ServiceUser))
	ctx := context.Background()
	publish := func(n int) (uint64, time.Time, string) {
		t.Helper()
		ev, err := event.New(event.SubjectCalllist, "sse-test-"+strconv.Itoa(n), time.Now(),
			event.CalllistUpdated{SubscriptionID: "sse-test-" + strconv.Itoa(n), OnList: true, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		ack, err := js.Publish(ctx, event.SubjectCalllist, b)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence, time.Now(), ev.ID
	}

	if resp, err := http.Get(s.URL + "/api/v1/events"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /api/v1/events without a token: %v %v, want 401", resp.StatusCode, err)
	}

	c := openSSE(t, s, "")
	seq, published, id := publish(1)
	ev := c.next(t, 2*time.Second)
	if lag := ev.at.Sub(published); lag > time.Second {
		t.Errorf("event arrived %v after publication, want within 1s", lag)
	}
	if ev.id != strconv.FormatUint(seq, 10) || ev.event != "renewals.calllist.updated.v1" || !strings.Contains(ev.data, `"id":"`+id+`"`) {
		t.Fatalf("event = %+v, want id %d of type renewals.calllist.updated.v1 with CloudEvents id %s", ev, seq, id)
	}
	c.close()

	// Away: five more events.
	var want []uint64
	for i := range 5 {
		s, _, _ := publish(i + 2)
		want = append(want, s)
	}
	again := openSSE(t, s, ev.id)
	for i, w := range want {
		got := again.next(t, 5*time.Second)
		if got.id != strconv.FormatUint(w, 10) {
			t.Fatalf("resumed event %d has id %s, want %d (after Last-Event-ID %s)", i, got.id, w, ev.id)
		}
		var ce event.Event
		if err := json.Unmarshal([]byte(got.data), &ce); err != nil || ce.SpecVersion != "1.0" || ce.Subject != "sse-test-"+strconv.Itoa(i+2) {
			t.Fatalf("resumed event %d data = %s (%v)", i, got.data, err)
		}
	}
	// And live again after the backlog.
	seq, published, _ = publish(7)
	live := again.next(t, 2*time.Second)
	if live.id != strconv.FormatUint(seq, 10) || live.at.Sub(published) > time.Second {
		t.Fatalf("live event after resuming: id %s (want %d), %v after publication", live.id, seq, live.at.Sub(published))
	}
}

// TestReadyzFollowsNATSAndStore checks that /readyz answers 503 while the
// store (Redis) or NATS is unreachable and 200 again once it is back, and
// that /metrics is served without a token meanwhile.
func TestReadyzFollowsNATSAndStore(t *testing.T) {
	natsDir, natsPort := t.TempDir(), testenv.FreePort(t)
	ns := testenv.NATSAt(t, natsDir, natsPort)
	rd := testenv.StartRedis(t)
	s := Start(t, Options{Env: map[string]string{"RENEWALS_NATS_URL": ns.ClientURL(), "RENEWALS_REDIS_URL": rd.URL}})
	status := func(path string) int {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	readyIs := func(want int, what string) {
		t.Helper()
		testenv.Eventually(t, 15*time.Second, "/readyz "+strconv.Itoa(want)+" "+what, func() bool { return status("/readyz") == want })
	}
	readyIs(http.StatusOK, "at start")

	if err := rd.Client(t).ShutdownNoSave(context.Background()).Err(); err != nil && !strings.Contains(err.Error(), "EOF") &&
		!strings.Contains(err.Error(), "connection") {
		t.Fatalf("shut Redis down: %v", err)
	}
	readyIs(http.StatusServiceUnavailable, "while Redis is down")
	if got := status("/metrics"); got != http.StatusOK {
		t.Errorf("/metrics while Redis is down: %d", got)
	}
	rd.Restart(t)
	readyIs(http.StatusOK, "once Redis is back")

	ns.Shutdown()
	ns.WaitForShutdown()
	readyIs(http.StatusServiceUnavailable, "while NATS is down")
	if got := status("/metrics"); got != http.StatusOK {
		t.Errorf("/metrics while NATS is down: %d", got)
	}
	testenv.NATSAt(t, natsDir, natsPort)
	readyIs(http.StatusOK, "once NATS is back")
	s.Stop(t) // before the restarted NATS server is shut down at cleanup
}
