package mailer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"renewals/pkg/subscription"
)

// Outbox is the Sender used when no SMTP server is configured: it writes each
// message as an RFC 5322 .eml file (the bytes SMTP would carry) into a
// directory, where a person or a test can read it.
type Outbox struct {
	dir  string
	from string
	now  func() time.Time
	env  Envelope
}

// SetEnvelope sets the envelope sender and signing of the messages; call it
// before the first Send.
func (o *Outbox) SetEnvelope(e Envelope) { o.env = e }

// NewOutbox creates dir (mode 0750) when missing and returns an Outbox that
// writes into it. from is the From address; now stamps the Date header and
// may be nil for the wall clock.
func NewOutbox(dir, from string, now func() time.Time) (*Outbox, error) {
	if dir == "" {
		return nil, fmt.Errorf("open outbox: no directory given: set RENEWALS_DATA_DIR")
	}
	if _, err := parseAddress(from, true); err != nil {
		return nil, fmt.Errorf("open outbox: From address %q (RENEWALS_MAIL_FROM): %w", from, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", dir, err)
	}
	if now == nil {
		now = time.Now
	}
	return &Outbox{dir: dir, from: from, now: now}, nil
}

// FileName names the .eml file of a notice key in the outbox:
// <subscription_id>_<end_date>_<milestone>.eml. A subscription id holds only
// letters, digits, '-' and '_', so the name is safe on every file system.
func FileName(key subscription.NoticeKey) string {
	return key.SubscriptionID + "_" + key.EndDate.String() + "_" + strconv.Itoa(key.Milestone) + ".eml"
}

// EraseFromOutbox deletes from dir the .eml file of every notice of the
// subscription (named by FileName), every other name of those files (a
// contract email's, see Outbox.Send) and any temporary file that an
// interrupted write left of one, and returns how many names it deleted.
// It matches the whole id, so the files of a subscription whose id merely
// starts with subscriptionID stay. A dir that does not exist holds nothing
// to delete.
func EraseFromOutbox(dir, subscriptionID string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("erase subscription %s from outbox %s: %w", subscriptionID, dir, err)
	}
	// The subscription's files, and every other name of one of them: a
	// contract email is one file with a name for each of its notices (hard
	// links). A symbolic link is a file of its own, not a name of what it
	// points to.
	var files, mine []fs.FileInfo
	for _, e := range entries {
		m := outboxName.FindStringSubmatch(e.Name())
		if e.IsDir() || m == nil {
			continue
		}
		if fi, err := e.Info(); err == nil {
			files = append(files, fi)
			if m[1]+m[2] == subscriptionID {
				mine = append(mine, fi)
			}
		}
	}
	n := 0
	var errs []error
	for _, fi := range files {
		if !slices.ContainsFunc(mine, func(m fs.FileInfo) bool { return os.SameFile(m, fi) }) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, fi.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("erase subscription %s from outbox %s: %w", subscriptionID, dir, err)
	}
	return n, nil
}

// outboxName matches an outbox file name, <id>_<end_date>_<milestone>.eml,
// or a temporary file of one, .<id>_<end_date>_<milestone>.eml.tmp-*, with
// the id in the first or second group. The id is what remains once the end
// date and milestone are cut from the end, so an id holding '_' is read whole.
var outboxName = regexp.MustCompile(`^(?:\.(.+)_\d{4}-\d\d-\d\d_-?\d+\.eml\.tmp-.*|(.+)_\d{4}-\d\d-\d\d_-?\d+\.eml)$`)

// Send writes m to its file atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory. A reader sees the old
// file or the new one, never a part. Writing the same key again replaces the
// file. Errors are transient, except a message that cannot be built
// (ErrPermanent).
func (o *Outbox) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write notice %s to outbox: %w", m.Key, err)
	}
	data, err := compose(o.from, m, o.now(), o.env)
	if err != nil {
		return err
	}
	if err := m.begin(); err != nil {
		return err
	}
	if err := writeAtomic(o.dir, FileName(m.Key), data); err != nil {
		return fmt.Errorf("write notice %s to outbox: %w", m.Key, err)
	}
	// An email of several notices is one file with a name (a hard link)
	// for each key, so that each notice's file is there and erasing any of
	// its subscriptions removes the email (see EraseFromOutbox).
	if len(m.Also) == 0 {
		return nil
	}
	for _, k := range m.Also {
		name := filepath.Join(o.dir, FileName(k))
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write notice %s to outbox: %w", k, err)
		}
		if err := os.Link(filepath.Join(o.dir, FileName(m.Key)), name); err != nil {
			return fmt.Errorf("write notice %s to outbox: %w", k, err)
		}
	}
	if err := syncDir(o.dir); err != nil {
		return fmt.Errorf("write notice %s to outbox: %w", m.Key, err)
	}
	return nil
}

// Close does nothing: the outbox holds no resources.
func (o *Outbox) Close() error { return nil }

// writeAtomic writes data to dir/name through a temporary file, synced
// before the rename and the directory after it: the rename is durable only
// once the directory itself is synced.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err = errors.Join(err, f.Chmod(0o640), f.Sync(), f.Close()); err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
}

// syncDir makes the directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
