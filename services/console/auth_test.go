package console

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := AddUser(path, "jo", Viewer, "short"); err == nil || !strings.Contains(err.Error(), "8 characters") {
		t.Errorf("a short password: %v, want a sentence about its length", err)
	}
	if err := AddUser(path, "jo:x", Viewer, "long enough pw"); err == nil {
		t.Error("a name with a colon was taken")
	}
	if err := AddUser(path, "jo", Viewer, "first password"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "sam", Operator, "sams password"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "jo", Operator, "second password"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(path)
	if strings.Count(string(b), "\n") != 2 || strings.Contains(string(b), "password") {
		t.Errorf("users file:\n%s\nwant two lines of hashes", b)
	}
	for _, c := range []struct {
		name, pw string
		role     Role
		ok       bool
	}{
		{"jo", "second password", Operator, true},
		{"jo", "first password", "", false},
		{"sam", "sams password", Operator, true},
		{"nobody", "sams password", "", false},
	} {
		role, ok, err := checkUser(path, c.name, c.pw)
		if err != nil || ok != c.ok || role != c.role {
			t.Errorf("checkUser(%s, %s) = %q %v %v, want %q %v", c.name, c.pw, role, ok, err, c.role, c.ok)
		}
	}
	if err := os.WriteFile(path, []byte("jo:$2a$10$abc:admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadUsers(path); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a bad role: %v, want the line and what to write", err)
	}
	if users, err := ReadUsers(filepath.Join(t.TempDir(), "none")); err != nil || users != nil {
		t.Errorf("a missing file: %v %v, want no users", users, err)
	}
}

func TestSessionsEnd(t *testing.T) {
	var s sessions
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	id, ss := s.create("jo", Viewer, now)
	if got := s.get(id, now); got != ss {
		t.Fatal("a new session is not found")
	}
	if s.get(id+"x", now) != nil || s.get("", now) != nil {
		t.Error("a made-up session value was found")
	}
	if s.get(id, now.Add(SessionTTL+time.Second)) != nil {
		t.Error("an expired session was found")
	}
	id, _ = s.create("jo", Viewer, now)
	s.end(id)
	if s.get(id, now) != nil {
		t.Error("a session ended by sign-out was found")
	}
}

func TestFailedSignInsBounded(t *testing.T) {
	l := newLimiter()
	for range FailedSignIns {
		if l.blocked("192.0.2.1") {
			t.Fatal("blocked before the limit")
		}
		l.failed("192.0.2.1")
	}
	if !l.blocked("192.0.2.1") {
		t.Error("not blocked after the limit")
	}
	if l.blocked("192.0.2.2") {
		t.Error("another address is blocked too")
	}
}
