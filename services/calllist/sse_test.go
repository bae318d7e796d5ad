package calllist

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/natsbus"
	"renewals/pkg/testenv"
)

// A last event id that is no stream sequence, or the largest one (whose
// next does not fit in 64 bits), is the client's mistake: 400 with a JSON
// sentence, whether it comes as the header or the query parameter. The one
// below it is still a valid place to resume.
func TestEventStreamRefusesLastEventIDThatOverflows(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	if err := natsbus.EnsureStream(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(&EventStream{JS: js, Log: zap.NewNop(), Heartbeat: time.Hour})
	t.Cleanup(hs.Close) // after the streams' cleanups have ended them
	get := func(header, query string) *http.Response {
		t.Helper()
		u := hs.URL
		if query != "" {
			u += "?last_event_id=" + url.QueryEscape(query)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if header != "" {
			req.Header.Set("Last-Event-ID", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, v := range []string{"18446744073709551615", "18446744073709551616", "99999999999999999999999999", "-1"} {
		for _, asHeader := range []bool{true, false} {
			var resp *http.Response
			name := "last_event_id"
			if asHeader {
				resp, name = get(v, ""), "Last-Event-ID"
			} else {
				resp = get("", v)
			}
			var e struct{ Error, Code string }
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("%s %s: answer is not JSON: %v", name, v, err)
			}
			if resp.StatusCode != http.StatusBadRequest || e.Code != "invalid" || !strings.HasPrefix(e.Error, name+" ") || !strings.Contains(e.Error, "stream sequence number") {
				t.Errorf("%s %s: %d %+v, want 400 naming %s", name, v, resp.StatusCode, e, name)
			}
		}
	}
	if resp := get("18446744073709551614", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("Last-Event-ID 18446744073709551614: %d, want 200", resp.StatusCode)
	}
}
