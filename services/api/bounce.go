package api

import (
	"context"
	"errors"
	"io"
	"net/http"

	"renewals/pkg/bounce"
	"renewals/pkg/page"
	"renewals/pkg/subscription"
	"renewals/services/bounces"
)

// ResendRequest is the body of POST /api/v1/notices/{key}/resend.
type ResendRequest struct {
	Force  bool   `json:"force,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// bounceRoutes adds the resend and the hand-fed bounce.
func (s *Server) bounceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/notices/{key}/resend", s.wrap(s.resend))
	mux.HandleFunc("POST /api/v1/bounces", s.wrap(s.feedBounce))
}

// bounceError maps the bounce service's errors to the API's codes.
func bounceError(err error) error {
	switch {
	case errors.Is(err, subscription.ErrNotFound):
		return errorf(CodeNotFound, "%v", err)
	case errors.Is(err, bounces.ErrConflict):
		return errorf(CodeConflict, "%v", err)
	case errors.Is(err, bounces.ErrInvalid):
		return errorf(CodeInvalid, "%v", err)
	case errors.Is(err, bounces.ErrUnknownTag), errors.Is(err, bounce.ErrUnreadable):
		return errorf(CodeUnprocessable, "%v", err)
	}
	return err
}

func (s *Server) resend(w http.ResponseWriter, r *http.Request) error {
	key, err := subscription.ParseNoticeKey(r.PathValue("key"))
	if err != nil {
		return errorf(CodeInvalid, "%v", err)
	}
	var req ResendRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	res, err := s.Resend(r.Context(), key, req.Force, req.Reason)
	if err != nil {
		return err
	}
	page.WriteJSON(w, http.StatusAccepted, res)
	return nil
}

// Resend is POST /api/v1/notices/{key}/resend without HTTP, for the
// console: its errors carry the API's codes (see StatusOf).
func (s *Server) Resend(ctx context.Context, key subscription.NoticeKey, force bool, reason string) (bounces.ResendResult, error) {
	if s.Bounces == nil {
		return bounces.ResendResult{}, errorf(CodeUnavailable, "this process does not handle resends")
	}
	res, err := s.Bounces.Resend(ctx, key, force, reason)
	if err != nil {
		return res, bounceError(err)
	}
	return res, nil
}

// feedBounce handles one saved bounce (`renewals bounce FILE.eml`), the
// message as the body.
func (s *Server) feedBounce(w http.ResponseWriter, r *http.Request) error {
	if s.Bounces == nil {
		return errorf(CodeUnavailable, "this process does not handle bounces")
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, bounce.MaxSize+1))
	if err != nil {
		return err
	}
	if len(raw) > bounce.MaxSize {
		return errorf(CodeTooLarge, "the message is larger than a bounce can be (%d bytes): feed the bounce notice itself, not a mailbox export", bounce.MaxSize)
	}
	res, err := s.Bounces.Feed(r.Context(), raw)
	if err != nil {
		return bounceError(err)
	}
	page.WriteJSON(w, http.StatusOK, res)
	return nil
}
