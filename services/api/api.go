// Package api serves the renewals HTTP API: JSON under /api/v1 behind a
// bearer token, and /healthz, /readyz and /metrics without one. Domain
// errors are mapped to HTTP status codes here, once, at the edge.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/importer"
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
		writeJSON(w, statusOf[ae.code], Error{ae.msg, ae.code})
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// requireToken answers 401 to any request without the bearer token.
func requireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="renewals"`)
			writeJSON(w, http.StatusUnauthorized, Error{
				"missing or wrong bearer token: send Authorization: Bearer <token> (see <data dir>/api-token)", CodeUnauthorized})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// decodeJSON reads a JSON body into v, rejecting unknown fields.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(CodeInvalid, "request body is not valid JSON for this endpoint: %v", err)
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
