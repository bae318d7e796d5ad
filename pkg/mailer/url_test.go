package mailer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"renewals/pkg/mailer"
	"renewals/pkg/testenv"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want mailer.SMTPConfig
	}{
		{"smtp://user:p%40ss@mail.example.com:587?tls=starttls",
			mailer.SMTPConfig{Host: "mail.example.com", Port: 587, Username: "user", Password: "p@ss", TLS: mailer.TLSStartTLS, Workers: 4}},
		{"smtp://mail.example.com", mailer.SMTPConfig{Host: "mail.example.com", Port: 587, TLS: mailer.TLSOpportunistic, Workers: 4}},
		{"smtp://mail.example.com?tls=tls", mailer.SMTPConfig{Host: "mail.example.com", Port: 465, TLS: mailer.TLSImplicit, Workers: 4}},
		{"smtps://u:p@mail.example.com", mailer.SMTPConfig{Host: "mail.example.com", Port: 465, Username: "u", Password: "p", TLS: mailer.TLSImplicit, Workers: 4}},
		{"smtp://127.0.0.1:2525?tls=none&workers=8&rate=2.5", mailer.SMTPConfig{Host: "127.0.0.1", Port: 2525, TLS: mailer.TLSNone, Workers: 8, Rate: 2.5}},
		{"smtp://[::1]:25?tls=OPPORTUNISTIC", mailer.SMTPConfig{Host: "::1", Port: 25, TLS: mailer.TLSOpportunistic, Workers: 4}},
	} {
		got, err := mailer.ParseURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"http://mail.example.com", "scheme"},
		{"smtp://", "no host"},
		{"smtp://h?tls=ssl", "tls="},
		{"smtp://h?workers=0", "workers="},
		{"smtp://h?rate=-1", "rate="},
		{"smtp://h?rate=NaN", "rate="},
		{"smtp://h:99999", "port"},
		{"smtp://h?wokers=2", "unknown parameter"},
		{"smtps://h?tls=none", "smtps://"},
		{"smtp://u:secret@h/path", "path"},
		{"smtp://u:secret@h\x7f", "not a URL"},
	} {
		_, err := mailer.ParseURL(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q) error = %v, want one containing %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error repeats the password: %v", tc.in, err)
		}
	}
	cfg, _ := mailer.ParseURL("smtp://user:secret@h:587")
	if s := cfg.String(); strings.Contains(s, "secret") || !strings.Contains(s, "user:xxxxx@h:587") {
		t.Errorf("String() = %q, want the password masked", s)
	}
}

func TestRateLimitedSenderDelivers(t *testing.T) {
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, "&workers=2&rate=500")
	for i := range 5 {
		if err := s.Send(t.Context(), sample(fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	srv.WaitFor(5, 10*time.Second)
	if got := s.Config(); got.Rate != 500 || got.Workers != 2 {
		t.Errorf("Config() = %+v", got)
	}
}
