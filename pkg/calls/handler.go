package calls

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"renewals/pkg/page"
	"renewals/pkg/subscription"
)

// Handler serves POST /api/v1/subscriptions/{id}/calls (record a call:
// 201 with the call, notes included) and GET of the same path (the
// subscription's calls, oldest first). Errors are JSON {"error","code"}:
// 400 for bad input, 404 for no such subscription, 503 when the store or
// NATS fails.
type Handler struct {
	Service *Service
	Log     *zap.Logger
}

// maxBody bounds a call's JSON body.
const maxBody = 16 << 10

// ServeHTTP answers one request; the id is the path's {id} value.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	switch r.Method {
	case http.MethodGet:
		cs, err := h.Service.List(r.Context(), id)
		if err != nil {
			h.fail(w, err)
			return
		}
		if cs == nil {
			cs = []subscription.Call{}
		}
		page.WriteJSON(w, http.StatusOK, map[string]any{"subscription_id": id, "count": len(cs), "calls": cs})
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			page.WriteJSON(w, http.StatusRequestEntityTooLarge, errBody("a call is at most 16 KiB of JSON: shorten the note", "too_large"))
			return
		}
		var in Input
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			page.WriteJSON(w, http.StatusBadRequest, errBody("the call is not valid JSON ("+err.Error()+"): send {\"outcome\":\"no_answer\",\"note\":\"...\"}", "invalid"))
			return
		}
		c, err := h.Service.Record(r.Context(), id, in)
		if err != nil {
			h.fail(w, err)
			return
		}
		page.WriteJSON(w, http.StatusCreated, c)
	default:
		w.Header().Set("Allow", "GET, POST")
		page.WriteJSON(w, http.StatusMethodNotAllowed, errBody("use GET to list the calls or POST to record one", "invalid"))
	}
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		msg := err.Error()
		msg = strings.TrimPrefix(msg, ErrInvalid.Error()+": ")
		page.WriteJSON(w, http.StatusBadRequest, errBody(msg, "invalid"))
	case errors.Is(err, subscription.ErrNotFound):
		page.WriteJSON(w, http.StatusNotFound, errBody("no such subscription: check the id, or import it first", "not_found"))
	default:
		if h.Log != nil {
			h.Log.Error("calls", zap.Error(err))
		}
		page.WriteJSON(w, http.StatusServiceUnavailable, errBody("the call could not be handled now: "+err.Error(), "unavailable"))
	}
}

func errBody(msg, code string) map[string]string {
	return map[string]string{"error": msg, "code": code}
}
