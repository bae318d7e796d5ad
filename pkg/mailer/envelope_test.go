package mailer_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"renewals/pkg/mailer"
	"renewals/pkg/testenv"
)

// dkimKey writes a fresh RSA key as PKCS#8 PEM into a file of the test's and
// returns the file and the TXT record that would publish its public half.
func dkimKey(t *testing.T) (file, txt string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return file, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
}

// verify checks raw's DKIM signatures with the public key served for
// sel._domainkey.domain only; it returns the verifications.
func verify(t *testing.T, raw []byte, name, txt string) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != name {
				return nil, errors.New("no such record: " + domain)
			}
			return []string{txt}, nil
		},
	})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

// TestDKIMSignedNoticeVerifies sends a notice through SMTP signed with
// RENEWALS_DKIM_KEY_FILE's key and a per-notice envelope sender, and checks
// with go-msgauth's verifier, against the public key in an injected DNS
// lookup, that the signature holds for the bytes the server received; and
// that a changed byte breaks it.
func TestDKIMSignedNoticeVerifies(t *testing.T) {
	file, txt := dkimKey(t)
	const from = `"Acme Software Ltd" <renewals@acme.example>`
	d, err := mailer.LoadDKIM(file, "rn2026", from)
	if err != nil {
		t.Fatal(err)
	}
	if d.Domain != "acme.example" {
		t.Errorf("signing domain = %q, want the From address's", d.Domain)
	}
	srv := testenv.SMTP(t)
	cfg, err := mailer.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	s, err := mailer.NewSMTP(cfg, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rp = "bounce+110001234567=20270331=90=0123456789=0123456789abcdef@bounces.acme.example"
	s.SetEnvelope(mailer.Envelope{DKIM: d, ReturnPath: func(m mailer.Message) string { return rp }})
	if err := s.Send(t.Context(), sample("110001234567")); err != nil {
		t.Fatal(err)
	}
	got := srv.WaitFor(1, 10*time.Second)[0]
	if got.From != rp {
		t.Errorf("MAIL FROM = %q, want the per-notice bounce address", got.From)
	}
	msg, err := got.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if f := msg.Header.Get("From"); !strings.Contains(f, "<renewals@acme.example>") {
		t.Errorf("From header = %q, want the reseller's address", f)
	}
	if a := msg.Header.Get("Auto-Submitted"); a != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", a)
	}
	vs := verify(t, got.Data, "rn2026._domainkey.acme.example", txt)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "acme.example" {
		t.Fatalf("verifications = %+v, want one good signature of acme.example", vs)
	}
	for _, h := range []string{"from", "to", "subject", "date", "message-id", "x-renewal-notice"} {
		found := false
		for _, k := range vs[0].HeaderKeys {
			found = found || strings.EqualFold(k, h)
		}
		if !found {
			t.Errorf("the signature does not cover %s: %v", h, vs[0].HeaderKeys)
		}
	}
	// Positive control: the verifier does check. A changed subject fails.
	tampered := bytes.Replace(got.Data, []byte("Subject: "), []byte("Subject: X"), 1)
	if vs := verify(t, tampered, "rn2026._domainkey.acme.example", txt); len(vs) != 1 || vs[0].Err == nil {
		t.Errorf("a tampered message verified: %+v", vs)
	}
}

// TestOutboxSignsAndNamesReturnPath: the outbox writes what SMTP would
// carry, signed, with the envelope sender as Return-Path.
func TestOutboxSignsAndNamesReturnPath(t *testing.T) {
	file, txt := dkimKey(t)
	d, err := mailer.LoadDKIM(file, "s1", "renewals@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o, err := mailer.NewOutbox(dir, "renewals@acme.example", clock)
	if err != nil {
		t.Fatal(err)
	}
	o.SetEnvelope(mailer.Envelope{DKIM: d, ReturnPath: func(m mailer.Message) string { return "bounce+x@b.acme.example" }})
	m := sample("110001234567")
	if err := o.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, mailer.FileName(m.Key)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("Return-Path: <bounce+x@b.acme.example>\r\n")) {
		t.Errorf("outbox file starts %q, want the Return-Path", raw[:min(len(raw), 80)])
	}
	if vs := verify(t, raw, "s1._domainkey.acme.example", txt); len(vs) != 1 || vs[0].Err != nil {
		t.Errorf("verifications = %+v", vs)
	}
}

func TestLoadDKIMRefusesWhatIsNoKey(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, sel, want string }{
		{bad, "s1", "no PEM block"},
		{"", "s1", "needs both"},
		{filepath.Join(t.TempDir(), "missing.pem"), "s1", "RENEWALS_DKIM_KEY_FILE"},
	} {
		if _, err := mailer.LoadDKIM(tc.file, tc.sel, "renewals@acme.example"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadDKIM(%q) = %v, want an error saying %q", tc.file, err, tc.want)
		}
	}
}
