package bounces

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"renewals/pkg/bounce"
)

// Receiver is the SMTP server of the bounces target: it accepts mail only
// for verified bounce addresses (550 at RCPT otherwise), up to
// bounce.MaxSize, and hands each message to the Service.
type Receiver struct {
	Service *Service
	Log     *zap.Logger
	// Timeout bounds each read and write on a connection; 0 is one minute.
	Timeout time.Duration
	// Hostname is announced in the greeting; empty is "renewals".
	Hostname string
}

// MaxRecipients bounds the bounce addresses of one message: a DSN goes to
// one envelope sender.
const MaxRecipients = 10

// Serve runs the receiver on ln until ctx ends, then closes it.
func (r *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	s := smtp.NewServer(&backend{r: r})
	s.Domain = r.Hostname
	if s.Domain == "" {
		s.Domain = "renewals"
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	s.ReadTimeout, s.WriteTimeout = timeout, timeout
	s.MaxMessageBytes = bounce.MaxSize
	s.MaxRecipients = MaxRecipients
	s.MaxLineLength = 4000
	s.ErrorLog = zapErrorLog{r.Log}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(sctx); err != nil {
			_ = s.Close()
		}
	})
	defer stop()
	err := s.Serve(ln)
	if ctx.Err() != nil || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("bounce receiver: %w", err)
}

type zapErrorLog struct{ l *zap.Logger }

func (z zapErrorLog) Printf(format string, v ...any) { z.l.Warn(fmt.Sprintf(format, v...)) }
func (z zapErrorLog) Println(v ...any)               { z.l.Warn(fmt.Sprint(v...)) }

type backend struct{ r *Receiver }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{r: b.r}, nil
}

type session struct {
	r    *Receiver
	tags []bounce.Tag
}

func (s *session) Reset()        { s.tags = nil }
func (s *session) Logout() error { return nil }

// Mail takes any sender: a DSN comes from the null sender <>.
func (s *session) Mail(string, *smtp.MailOptions) error { return nil }

// Rcpt refuses, with 550, every address that is not a verified bounce
// address of a notice the ledger knows.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tag, err := s.r.Service.Accept(ctx, to)
	if errors.Is(err, ErrUnknownTag) {
		s.r.Log.Info("bounce receiver refused a recipient", zap.Error(err))
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such bounce address"}
	}
	if err != nil {
		s.r.Log.Warn("bounce receiver: cannot check a recipient", zap.Error(err))
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.tags = append(s.tags, tag)
	return nil
}

// Data reads the message and handles it once per accepted address. A
// message that is no readable bounce is taken (and dropped): refusing it
// would only send a bounce of the bounce to the relay's postmaster.
func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(io.LimitReader(r, bounce.MaxSize+1))
	if err != nil {
		return err
	}
	if len(raw) > bounce.MaxSize {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "message too large for a bounce"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tag := range s.tags {
		if _, err := s.r.Service.Handle(ctx, tag, raw); err != nil && !errors.Is(err, bounce.ErrUnreadable) {
			s.r.Log.Warn("bounce not recorded; the relay will deliver it again", zap.Stringer("notice_key", tag.Key), zap.Error(err))
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
	}
	return nil
}
