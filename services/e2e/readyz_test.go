package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"renewals/pkg/testenv"
)

// TestReadyzNeedsAWritableStore: a Redis that serves reads but refuses
// writes (a primary short of its min-replicas-to-write) cannot store an
// import or confirm a send, so /readyz answers 503 and says so, while reads
// through the API still work; once Redis takes writes, 200 again.
func TestReadyzNeedsAWritableStore(t *testing.T) {
	rd := testenv.StartRedis(t)
	s := Start(t, Options{Env: map[string]string{"RENEWALS_REDIS_URL": rd.URL}})
	const id = "110000000042"
	if code := s.API(t, "PUT", "/api/v1/subscriptions/"+id, map[string]string{"subscription_id": id, "end_date": "2027-05-31"}, nil); code != http.StatusOK {
		t.Fatalf("PUT: %d", code)
	}
	readyz := func() (int, string) {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	if code, msg := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz at start: %d %s", code, msg)
	}

	c := rd.Client(t)
	if err := c.ConfigSet(context.Background(), "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	// No waiting needed: each /readyz writes anew.
	code, msg := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "does not accept a write") || !strings.Contains(msg, "NOREPLICAS") {
		t.Errorf("/readyz while Redis refuses writes: %d %q, want 503 saying the store does not accept a write", code, msg)
	}
	var got map[string]any
	if code := s.API(t, "GET", "/api/v1/subscriptions/"+id, nil, &got); code != http.StatusOK || got["subscription_id"] != id {
		t.Errorf("GET while Redis refuses writes: %d %v, want the subscription (reads work)", code, got)
	}

	if err := c.ConfigSet(context.Background(), "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "/readyz 200 once Redis takes writes", func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
}
