// Package api serves the renewals HTTP API: JSON under /api/v1 behind a
// bearer token, and /healthz, /readyz and /metrics without one. Domain
// errors are mapped to HTTP status codes here, once, at the edge.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/importer"
	"renewals/pkg/page"
	"renewals/pkg/subscription"
)

// Error is the JSON body of every error answer.
type Error struct {
	Message string `json:"error"`
	Code    string `json:"code"`
}

// Error codes, each with its HTTP status.
const (
	CodeInvalid       = "invalid"
	CodeUnauthorized  = "unauthorized"
	CodeNotFound      = "not_found"
	CodeConflict      = "conflict"
	CodeTooLarge      = "too_large"
	CodeUnprocessable = "unprocessable"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"
	CodeTooMany       = "too_many_requests"
)

var statusOf = map[string]int{
	CodeInvalid:       http.StatusBadRequest,
	CodeUnauthorized:  http.StatusUnauthorized,
	CodeNotFound:      http.StatusNotFound,
	CodeConflict:      http.StatusConflict,
	CodeTooLarge:      http.StatusRequestEntityTooLarge,
	CodeUnprocessable: http.StatusUnprocessableEntity,
	CodeUnavailable:   http.StatusServiceUnavailable,
	CodeInternal:      http.StatusInternalServerError,
	CodeTooMany:       http.StatusTooManyRequests,
}

// apiError carries a code to the edge.
type apiError struct {
	code string
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func errorf(code, format string, args ...any) error {
	return &apiError{code, fmt.Sprintf(format, args...)}
}

// handlerFunc is an http.HandlerFunc that returns its error, so that every
// error answer is written one way.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) wrap(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				ae = &apiError{CodeUnavailable, "the request timed out: " + err.Error()}
			} else {
				s.Log.Error("request failed", zap.String("path", r.URL.Path), zap.Error(err))
				ae = &apiError{CodeInternal, "internal error: " + err.Error()}
			}
		}
		page.WriteJSON(w, statusOf[ae.code], Error{ae.msg, ae.code})
	}
}

// FieldReason is one rejected field of a record, as the PUT API's 422 answer
// and the CRM ingest reply list it: the field ("" for the record as a whole)
// and what is wrong with it and what to do, under the same lower-case names
// as an import report's rejections.
type FieldReason struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func fieldReasons(errs []importer.FieldError) []FieldReason {
	out := make([]FieldReason, len(errs))
	for i, e := range errs {
		out[i] = FieldReason{e.Field, e.Reason}
	}
	return out
}

// validPathID answers 400 for an id that no subscription can have, before
// it reaches a store (whose keys cannot hold every character).
func validPathID(id string) error {
	if err := subscription.ValidID(id); err != nil {
		return errorf(CodeInvalid, "%v", err)
	}
	return nil
}

// requireToken checks the bearer token before anything reads the body: a
// request with more than one Authorization header answers 400 and one
// without the token 401, and either closes the connection. The scheme is
// matched without regard to case (RFC 7235), and the token is compared in
// constant time: both sides are hashed first, so that not even its length
// shows in the time taken.
func requireToken(token string, t Timeouts, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values := r.Header.Values("Authorization")
		if len(values) > 1 {
			refuse(w, http.StatusBadRequest, Error{
				fmt.Sprintf("the request has %d Authorization headers: send exactly one, Authorization: Bearer <token>", len(values)), CodeInvalid})
			return
		}
		got, ok := "", false
		if len(values) == 1 {
			got, ok = bearerToken(values[0])
		}
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="renewals"`)
			refuse(w, http.StatusUnauthorized, Error{
				"missing or wrong bearer token: send Authorization: Bearer <token> (see <data dir>/api-token)", CodeUnauthorized})
			return
		}
		w, r = progressDeadlines(w, r, t)
		next.ServeHTTP(w, r)
	})
}

// bearerToken returns the token of an Authorization value of the Bearer
// scheme, in any case, and false for any other scheme.
func bearerToken(v string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimLeft(token, " "), true
}

// refuse answers a request that is not served, and closes the connection
// after the answer: an unauthenticated client gets no keep-alive, and its
// body is never read (guardBody sees to that).
func refuse(w http.ResponseWriter, status int, e Error) {
	w.Header().Set("Connection", "close")
	page.WriteJSON(w, status, e)
}

// guardBody keeps a request body that the handler left unread from
// holding the connection: net/http would otherwise read up to 256 KiB of
// it, as slowly as the client cares to send, to reuse the connection.
// Instead the read is cut at once and the connection closed after the
// answer.
func guardBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body := &eofBody{ReadCloser: r.Body}
		r2 := *r
		r2.Body = body
		next.ServeHTTP(w, &r2)
		if !body.eof.Load() {
			w.Header().Set("Connection", "close")
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
	})
}

// eofBody notes when its reader has reached the end.
type eofBody struct {
	io.ReadCloser
	eof atomic.Bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// progressDeadlines turns the server's read and write time-outs, for an
// authenticated request, into limits on silence: each read of the body
// moves the read deadline t.Read ahead and each write of the answer moves
// the write deadline t.Write ahead. Once the body has
// been read to its end (or when there is none) the read deadline is lifted,
// since net/http's read in the background, which only watches for the
// client going away, would otherwise cancel a long answer (an import of a
// million rows, `run --wait`, the event stream) when it fires.
func progressDeadlines(w http.ResponseWriter, r *http.Request, t Timeouts) (http.ResponseWriter, *http.Request) {
	rc := http.NewResponseController(w)
	dw := &deadlineWriter{ResponseWriter: w, rc: rc, timeout: t.Write}
	if r.Body == nil || r.Body == http.NoBody {
		_ = rc.SetReadDeadline(time.Time{})
		return dw, r
	}
	r2 := *r
	r2.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeout: t.Read}
	return dw, &r2
}

// slack is how often, at most, a deadline of time-out d is moved: moving
// it costs a timer reset, and a tenth of d (at most a second) either way
// does not matter.
func slack(d time.Duration) time.Duration { return min(d/10, time.Second) }

type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	last    time.Time
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(b.last) >= slack(b.timeout) {
		b.last = now
		_ = b.rc.SetReadDeadline(now.Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// deadlineWriter moves the write deadline ahead on every write. It
// implements http.Flusher and unwraps for http.ResponseController.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	last    time.Time
}

func (d *deadlineWriter) extend() {
	if now := time.Now(); now.Sub(d.last) >= slack(d.timeout) {
		d.last = now
		_ = d.rc.SetWriteDeadline(now.Add(d.timeout))
	}
}

func (d *deadlineWriter) WriteHeader(code int) {
	d.extend()
	d.ResponseWriter.WriteHeader(code)
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.extend()
	return d.ResponseWriter.Write(p)
}

// Flush sends what is buffered to the client.
func (d *deadlineWriter) Flush() {
	d.extend()
	_ = d.rc.Flush()
}

// Unwrap returns the writer underneath, for http.ResponseController.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// decodeJSON reads a JSON body into v, rejecting unknown fields and
// anything after the value. It reads the body to its end, which lifts the
// read deadline (progressDeadlines) for what the handler does next.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(CodeInvalid, "request body is not valid JSON for this endpoint: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(CodeInvalid, "request body holds more than one JSON value: send one object")
	}
	return nil
}

// logRequests logs each request at debug level, without query strings (they
// may name a subscription) at higher levels.
func logRequests(log *zap.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		log.Debug("http", zap.String("method", r.Method), zap.String("path", strings.SplitN(r.URL.Path, "?", 2)[0]), zap.Duration("took", time.Since(start)))
	})
}

func eventJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return b, nil
}

// StatusOf returns the HTTP status and the sentence of an error returned by
// Import or Erase: the API's answer, for the console to give the same.
func StatusOf(err error) (int, string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return statusOf[ae.code], ae.msg
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable, "the request timed out: try again"
	}
	return http.StatusInternalServerError, "internal error: " + err.Error()
}
