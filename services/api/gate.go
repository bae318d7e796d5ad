package api

import (
	"net/http"
	"renewals/pkg/page"
	"runtime"
)

// readGate bounds the heavy reads (the call list, the forecast, the
// notices of every subscription), each of which reads a whole window of
// the store: run of them at once, as many again waiting for a turn, and
// beyond that 429 with Retry-After at once, so that memory and the store's
// load stay bounded whatever the callers do.
type readGate struct {
	admit chan struct{} // running and waiting
	run   chan struct{}
}

// DefaultHeavyReads is how many heavy reads run at once unless
// Server.HeavyReads says otherwise.
func DefaultHeavyReads() int { return max(2, 2*runtime.GOMAXPROCS(0)) }

func newReadGate(run int) *readGate {
	return &readGate{admit: make(chan struct{}, 2*run), run: make(chan struct{}, run)}
}

// RetryAfter is what a 429 answer asks the client to wait, in seconds.
const RetryAfter = "1"

func (g *readGate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case g.admit <- struct{}{}:
		default:
			w.Header().Set("Retry-After", RetryAfter)
			page.WriteJSON(w, http.StatusTooManyRequests, Error{
				"too many call-list, forecast and notice reads at once: try again in a second", CodeTooMany})
			return
		}
		defer func() { <-g.admit }()
		select {
		case g.run <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		defer func() { <-g.run }()
		h.ServeHTTP(w, r)
	})
}
