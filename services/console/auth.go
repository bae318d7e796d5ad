package console

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Role is what a signed-in person may do.
type Role string

// The roles. A viewer reads; an operator also imports, erases (and, in
// later work, resends and records calls). The API token signs in as an
// operator.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
)

// CookieName is the session cookie.
const CookieName = "renewals_session"

// loginCookie carries the sign-in form's CSRF token before there is a
// session (a double-submit cookie).
const loginCookie = "renewals_login"

// SessionTTL is how long a session lasts after sign-in.
const SessionTTL = 12 * time.Hour

type session struct {
	user    string
	role    Role
	csrf    string
	expires time.Time

	mu    sync.Mutex // guards flash
	flash *flash     // what the last post left for the next page
}

// sessions are kept in memory, by the SHA-256 of the cookie's value: a
// restart signs everyone out, and sign-out forgets the session at once.
type sessions struct {
	mu sync.Mutex
	m  map[[32]byte]*session
}

func newToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *sessions) create(user string, role Role, now time.Time) (string, *session) {
	id := newToken()
	ss := &session{user: user, role: role, csrf: newToken(), expires: now.Add(SessionTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[32]byte]*session{}
	}
	for k, v := range s.m { // forget the expired ones now and then
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[sha256.Sum256([]byte(id))] = ss
	return id, ss
}

func (s *sessions) get(id string, now time.Time) *session {
	if id == "" {
		return nil
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[k]
	if ss == nil {
		return nil
	}
	if now.After(ss.expires) {
		delete(s.m, k)
		return nil
	}
	return ss
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

// secure reports whether the request came over HTTPS, directly or through
// a proxy that says so.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r),
	})
}

func sameToken(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1 && a != ""
}

// FailedSignIns bounds the failed sign-ins: this many a minute from one
// address, and four times as many from all addresses together.
const FailedSignIns = 10

// limiter counts failed sign-ins per client address and overall.
type limiter struct {
	mu  sync.Mutex
	per map[string]*rate.Limiter
	all *rate.Limiter
}

func newLimiter() *limiter {
	return &limiter{per: map[string]*rate.Limiter{}, all: rate.NewLimiter(rate.Every(time.Minute/(4*FailedSignIns)), 4*FailedSignIns)}
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (l *limiter) of(addr string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.per[addr]
	if lim == nil {
		if len(l.per) > 10_000 {
			l.per = map[string]*rate.Limiter{} // bounded memory
		}
		lim = rate.NewLimiter(rate.Every(time.Minute/FailedSignIns), FailedSignIns)
		l.per[addr] = lim
	}
	return lim
}

// blocked reports whether addr has used up its failed sign-ins.
func (l *limiter) blocked(addr string) bool {
	return l.of(addr).Tokens() < 1 || l.all.Tokens() < 1
}

// failed counts one failed sign-in from addr.
func (l *limiter) failed(addr string) {
	l.of(addr).Allow()
	l.all.Allow()
}

// User is one line of the users file: name:bcrypt-hash:role.
type User struct {
	Name string
	Hash string
	Role Role
}

// dummyHash is compared against when the name is unknown, so that an
// unknown name takes as long as a wrong password.
// It is made on the first sign-in by name, not at start-up: every target
// of the binary links this package.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return h
})

// ReadUsers reads the users file; a missing file has no users.
func ReadUsers(path string) ([]User, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	var out []User
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		// A bcrypt hash holds no colon: name, hash and role split cleanly.
		parts := strings.Split(l, ":")
		if len(parts) != 3 || ValidName(parts[0]) != nil || (parts[2] != string(Viewer) && parts[2] != string(Operator)) {
			return nil, fmt.Errorf("users file %s line %d: write name:bcrypt-hash:role with role viewer or operator (renewals user add writes it)", path, line)
		}
		out = append(out, User{parts[0], parts[1], Role(parts[2])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	return out, nil
}

// ValidName reports whether name can be a user's name: 1 to 64 letters,
// digits, '.', '-', '_' or '@'.
func ValidName(name string) error {
	const ok = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_@"
	if len(name) < 1 || len(name) > 64 || strings.Trim(name, ok) != "" {
		return fmt.Errorf("%q is not a user name: use 1 to 64 letters, digits, '.', '-', '_' or '@'", name)
	}
	return nil
}

// AddUser writes name with the bcrypt hash of password and role into the
// users file, replacing a line of the same name, and keeps the file
// readable by its owner only.
func AddUser(path, name string, role Role, password string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if role != Viewer && role != Operator {
		return fmt.Errorf("role %q: use viewer or operator", role)
	}
	if len(password) < 8 {
		return errors.New("the password is shorter than 8 characters: choose a longer one")
	}
	if len(password) > 72 {
		return errors.New("the password is longer than 72 bytes, more than bcrypt reads: choose a shorter one")
	}
	users, err := ReadUsers(path)
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	var b strings.Builder
	replaced := false
	for _, u := range users {
		if u.Name == name {
			u.Hash, u.Role, replaced = string(hash), role, true
		}
		fmt.Fprintf(&b, "%s:%s:%s\n", u.Name, u.Hash, u.Role)
	}
	if !replaced {
		fmt.Fprintf(&b, "%s:%s:%s\n", name, hash, role)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// checkUser returns the role of name when password is its password. The
// file is read on each sign-in, so `renewals user add` needs no restart.
func checkUser(path, name, password string) (Role, bool, error) {
	users, err := ReadUsers(path)
	if err != nil {
		return "", false, err
	}
	for _, u := range users {
		if u.Name == name {
			if bcrypt.CompareHashAndPassword([]byte(u.Hash), []byte(password)) == nil {
				return u.Role, true, nil
			}
			return "", false, nil
		}
	}
	_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
	return "", false, nil
}
