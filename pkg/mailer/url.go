package mailer

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// TLSMode says how the SMTP connection is encrypted.
type TLSMode string

// The TLS modes of RENEWALS_SMTP_URL's tls parameter.
const (
	// TLSNone never encrypts, even when the server offers STARTTLS.
	TLSNone TLSMode = "none"
	// TLSOpportunistic uses STARTTLS when the server offers it, else plain
	// text. The default.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSStartTLS requires STARTTLS: a server without it is an error.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (SMTPS, usually port 465).
	TLSImplicit TLSMode = "tls"
)

// DefaultWorkers is the number of SMTP connections when the URL names none.
const DefaultWorkers = 4

// SMTPConfig is a parsed RENEWALS_SMTP_URL.
type SMTPConfig struct {
	Host string
	// Port is the TCP port: from the URL, else 465 with TLSImplicit and 587
	// (submission) otherwise.
	Port int
	// Username and Password, when Username is set, authenticate with the
	// strongest mechanism both sides support. PLAIN and LOGIN are only used
	// over TLS or to localhost.
	Username, Password string
	TLS                TLSMode
	// Rate caps the messages per second across all workers; 0 is no cap.
	Rate float64
	// Workers is the number of connections, each used by one worker at a time.
	Workers int
}

// Addr returns "host:port".
func (c SMTPConfig) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// String writes the configuration as a URL with the password masked, for
// logs and error messages.
func (c SMTPConfig) String() string {
	u := url.URL{Scheme: "smtp", Host: c.Addr()}
	if c.Username != "" {
		u.User = url.UserPassword(c.Username, "xxxxx")
	}
	q := url.Values{"tls": {string(c.TLS)}, "workers": {strconv.Itoa(c.Workers)}}
	if c.Rate > 0 {
		q.Set("rate", strconv.FormatFloat(c.Rate, 'g', -1, 64))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

const urlExample = "smtp://user:pass@mail.example.com:587?tls=starttls"

// ParseURL parses RENEWALS_SMTP_URL, e.g.
// smtp://user:pass@host:587?tls=starttls&workers=4&rate=10. The scheme is
// smtp, or smtps for tls=tls. Query parameters: tls (none, opportunistic
// (default), starttls or tls), workers (1 to 256, default 4) and rate
// (messages per second, default unlimited). Any other parameter is an
// error, so that a typo is not silently ignored. Errors never repeat the password.
func ParseURL(s string) (SMTPConfig, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url's error repeats the input, password included: do not wrap it.
		return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL is not a URL: write it as %s", urlExample)
	}
	cfg := SMTPConfig{TLS: TLSOpportunistic, Workers: DefaultWorkers}
	switch strings.ToLower(u.Scheme) {
	case "smtp":
	case "smtps":
		cfg.TLS = TLSImplicit
	default:
		return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL: scheme %q is not supported: use smtp:// (or smtps:// for implicit TLS), e.g. %s", u.Scheme, urlExample)
	}
	cfg.Host = u.Hostname()
	if cfg.Host == "" {
		return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL names no host: write it as %s", urlExample)
	}
	if u.Path != "" && u.Path != "/" {
		return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL has a path %q: remove it; only host, port and parameters are used", u.Path)
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	q := u.Query()
	for k := range q {
		if k != "tls" && k != "rate" && k != "workers" {
			return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL: unknown parameter %q: use tls, workers or rate", k)
		}
	}
	if v := q.Get("tls"); v != "" {
		switch m := TLSMode(strings.ToLower(v)); m {
		case TLSNone, TLSOpportunistic, TLSStartTLS, TLSImplicit:
			if u.Scheme == "smtps" && m != TLSImplicit {
				return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL: smtps:// means implicit TLS but tls=%s: use smtp://...?tls=%s or drop the tls parameter", v, v)
			}
			cfg.TLS = m
		default:
			return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL: tls=%q is not a TLS mode: use none, opportunistic, starttls or tls", v)
		}
	}
	cfg.Port = 587
	if cfg.TLS == TLSImplicit {
		cfg.Port = 465
	}
	if p := u.Port(); p != "" {
		if cfg.Port, err = strconv.Atoi(p); err != nil || cfg.Port < 1 || cfg.Port > 65535 {
			return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL: port %q is not a port number: use 1 to 65535, e.g. 587", p)
		}
	}
	if v := q.Get("workers"); v != "" {
		if cfg.Workers, err = strconv.Atoi(v); err != nil || cfg.Workers < 1 || cfg.Workers > 256 {
			return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL: workers=%q is not a pool size: use a whole number from 1 to 256", v)
		}
	}
	if v := q.Get("rate"); v != "" {
		if cfg.Rate, err = strconv.ParseFloat(v, 64); err != nil || !(cfg.Rate > 0 && cfg.Rate <= 1e6) { // NaN too
			return SMTPConfig{}, fmt.Errorf("RENEWALS_SMTP_URL: rate=%q is not a message rate: use messages per second greater than 0, e.g. rate=5 or rate=0.5", v)
		}
	}
	return cfg, nil
}
