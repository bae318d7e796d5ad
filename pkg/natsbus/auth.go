package natsbus

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"renewals/pkg/event"
)

// Users of the embedded server. No client connects without one of them: the
// port is open to every local process, and what it carries (the data keys,
// the due subjects, the ingest subject) is as powerful as the API token.
const (
	// ServiceUser is the service's own user: it may do everything.
	ServiceUser = "renewals"
	// DashboardUser may follow the events and nothing else: see
	// DashboardPermissions.
	DashboardUser = "dashboard"
)

// Files, under the data dir, holding the embedded server's passwords.
const (
	ServicePasswordFile   = "nats-password"
	DashboardPasswordFile = "nats-dashboard-password"
)

// InboxPrefix is the prefix of the reply subjects of the service's own
// requests. It is not _INBOX, so that a dashboard, which may subscribe to
// _INBOX.> for its own replies, never receives the replies to the service's
// requests (key-value reads among them).
const InboxPrefix = "_INBOX_renewals"

// EventSubjects are the subjects of every outbound event: the RENEWALS
// stream's subjects and the call records.
var EventSubjects = []string{"renewals.notice.>", "renewals.subscription.>", "renewals.calllist.>", "renewals.call.>"}

// DashboardPermissions are the read-only dashboard user's: subscribe to the
// events and to its own replies, and read the RENEWALS stream message by
// message (stream info and message get, for replay). It may publish nothing
// else: not on the due or ingest subjects, not into or out of a key-value
// bucket or the data-key stream, and not the consumer API, since permissions
// cannot tell a dashboard's consumer from the notifier's, and creating,
// updating or pulling from that one would change or swallow notices.
func DashboardPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.STREAM.INFO." + event.StreamName,
			"$JS.API.STREAM.MSG.GET." + event.StreamName,
		}},
		Subscribe: &server.SubjectPermission{Allow: append(slices.Clone(EventSubjects), "_INBOX.>")},
	}
}

// Credentials are the embedded server's passwords and the files they are
// kept in.
type Credentials struct {
	Service, Dashboard         string
	ServiceFile, DashboardFile string
}

// LoadCredentials reads the embedded server's passwords from dir, generating
// each one that is missing (mode 0600) on first start.
func LoadCredentials(dir string) (Credentials, error) {
	c := Credentials{
		ServiceFile:   filepath.Join(dir, ServicePasswordFile),
		DashboardFile: filepath.Join(dir, DashboardPasswordFile),
	}
	var err error
	if c.Service, err = loadOrCreateSecret(c.ServiceFile); err != nil {
		return Credentials{}, err
	}
	if c.Dashboard, err = loadOrCreateSecret(c.DashboardFile); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// loadOrCreateSecret returns the secret in path, or writes a new random one
// there. The file appears complete or not at all (written aside, then
// hard-linked into place), so two processes starting at once agree on it.
func loadOrCreateSecret(path string) (string, error) {
	if s, err := readSecret(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("generate NATS password: %w", err)
	}
	secret := hex.EncodeToString(raw[:])
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", fmt.Errorf("save NATS password to %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(secret + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, path)
	}
	if errors.Is(err, fs.ErrExist) {
		return readSecret(path) // another process was first
	}
	if err != nil {
		return "", fmt.Errorf("save NATS password to %s: %w", path, err)
	}
	return secret, nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("NATS password file %s is empty: delete it to have a new password generated", path)
	}
	return s, nil
}

// users are the embedded server's users.
func (c Credentials) users() []*server.User {
	return []*server.User{
		{Username: ServiceUser, Password: c.Service},
		{Username: DashboardUser, Password: c.Dashboard, Permissions: DashboardPermissions()},
	}
}

// Hint says where the passwords are and how a `nats` CLI user connects to
// the embedded server at url as the dashboard user.
func (c Credentials) Hint(url string) string {
	return fmt.Sprintf("renewals: embedded NATS on %s for users %s (password in %s) and the read-only %s (password in %s), e.g. "+
		"nats --server %s --user %s --password \"$(cat %s)\" sub 'renewals.notice.>'",
		url, ServiceUser, c.ServiceFile, DashboardUser, c.DashboardFile, url, DashboardUser, c.DashboardFile)
}
