package morning

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"renewals/pkg/mailer"
)

// GoMail is the morning lists' own sender, on go-mail: one connection per
// message to the SMTP server of RENEWALS_SMTP_URL (a handful of reps a day
// needs no pool), or, without one, a .eml file per message in the outbox
// directory, named morning-<rep digest>-<day>.eml.
type GoMail struct {
	// SMTP is the relay; nil writes to OutboxDir.
	SMTP      *mailer.SMTPConfig
	OutboxDir string
	// From is the sender address with its display name.
	From string
	Now  func() time.Time
}

// NewGoMail returns the sender for smtpURL (empty: the outbox under
// outboxDir), sending as from with the display name name.
func NewGoMail(smtpURL, from, name, outboxDir string, now func() time.Time) (*GoMail, error) {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("morning lists: RENEWALS_MAIL_FROM %q is not an address: %w", from, err)
	}
	a.Name = name
	g := &GoMail{OutboxDir: outboxDir, From: a.String(), Now: now}
	if smtpURL != "" {
		cfg, err := mailer.ParseURL(smtpURL)
		if err != nil {
			return nil, err
		}
		g.SMTP = &cfg
	}
	return g, nil
}

// Send builds and sends m: To is the one recipient, no Cc, no Bcc.
func (g *GoMail) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(g.From); err != nil {
		return fmt.Errorf("morning list: From: %w", err)
	}
	if err := msg.AddToFormat(m.ToName, m.To); err != nil {
		return fmt.Errorf("morning list: the rep's address: %w", err)
	}
	msg.Subject(m.Subject)
	domain := "renewals"
	if i := strings.LastIndexByte(g.From, '@'); i >= 0 {
		domain = strings.TrimSuffix(g.From[i+1:], ">")
	}
	msg.SetMessageIDWithValue(m.ID + "@" + domain)
	msg.SetDateWithValue(g.Now())
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetGenHeader("X-Renewals-Morning-List", m.ID)
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	if g.SMTP == nil {
		return g.writeOutbox(m.ID, msg)
	}
	c := g.SMTP
	opts := []gomail.Option{gomail.WithPort(c.Port), gomail.WithTimeout(30 * time.Second),
		gomail.WithTLSConfig(&tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12})}
	switch c.TLS {
	case mailer.TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case mailer.TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case mailer.TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	if c.Username != "" {
		opts = append(opts, gomail.WithUsername(c.Username), gomail.WithPassword(c.Password),
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthCramMD5, gomail.SMTPAuthPlain, gomail.SMTPAuthLogin))
	}
	cl, err := gomail.NewClient(c.Host, opts...)
	if err != nil {
		return fmt.Errorf("morning list: smtp client for %s: %w", c, err)
	}
	if err := cl.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("morning list: send through %s: %w", c.Addr(), err)
	}
	return nil
}

func (g *GoMail) writeOutbox(id string, msg *gomail.Msg) error {
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		return fmt.Errorf("morning list: build: %w", err)
	}
	if err := os.MkdirAll(g.OutboxDir, 0o750); err != nil {
		return fmt.Errorf("morning list: outbox: %w", err)
	}
	tmp, err := os.CreateTemp(g.OutboxDir, ".morning-*")
	if err != nil {
		return fmt.Errorf("morning list: outbox: %w", err)
	}
	_, err = tmp.Write(buf.Bytes())
	if err = errorsJoin(err, tmp.Sync(), tmp.Close()); err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(g.OutboxDir, id+".eml"))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("morning list: outbox: %w", err)
	}
	return nil
}

func errorsJoin(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
