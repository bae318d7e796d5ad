package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/subscription"
	"renewals/services/api"
)

const token = "test-token"

// serve runs the API for store and js on a test HTTP server.
func serve(t *testing.T, store subscription.Store, js jetstream.JetStream, ready func(context.Context) error) *httptest.Server {
	t.Helper()
	s := &api.Server{
		Store: store, JS: js, Now: time.Now, Log: zap.NewNop(), Token: token,
		MaxImportBytes: 64 << 20, Location: time.UTC, Ready: ready,
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs
}

// call sends one request with the token and returns the status and the
// body.
func call(t *testing.T, hs *httptest.Server, method, path, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// errorBody decodes a JSON error answer.
func errorBody(t *testing.T, b []byte) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil || e.Message == "" || e.Code == "" {
		t.Fatalf("answer %s is not a JSON error: %v", b, err)
	}
	return e
}
