// Package morning sends each of the reseller's reps (RENEWALS_REPS_FILE)
// one email each working morning with their calls for the day: their
// entries of the call list, most urgent first. It is mail to the reseller's
// own staff, not to customers: it has its own template (templates/morning),
// its own sender and its own From name, and never goes to a contract
// manager.
//
// Exactly once per rep and day, across restarts and replicas: before a
// send, a key for the rep and the day is created in the JetStream
// key-value bucket renewals_morning (create fails when it exists), and set
// to "sent" after. A claim left by a process that died mid-send is taken
// over after ClaimLease, so a crash can at worst send a rep's list twice,
// never lose a day. The keys hold a digest of the rep's email and the day:
// no name, no address.
package morning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/subscription"
	"renewals/services/calllist"
)

// Bucket is the key-value bucket of the sent morning lists.
const Bucket = "renewals_morning"

// ClaimLease is how long a claimed morning list may stay unconfirmed before
// another process takes it over.
const ClaimLease = 5 * time.Minute

// Mail sends one email to one rep.
type Mail interface {
	Send(ctx context.Context, m Message) error
}

// Message is one rep's morning email.
type Message struct {
	To, ToName          string
	Subject, Text, HTML string
	// ID is unique per rep and day: the Message-ID's left part and the
	// outbox file's name.
	ID string
}

// Data is what the morning templates see.
type Data struct {
	Rep      string
	Day      subscription.Date
	Entries  []calllist.Entry
	Reseller string
}

// Sender sends the morning lists. Its fields are set once by the caller.
type Sender struct {
	Reps     []Rep
	Lister   *calllist.Lister
	JS       jetstream.JetStream
	Mail     Mail
	Reseller string
	Now      func() time.Time
	Log      *zap.Logger

	tpl  templates
	mu   sync.Mutex // one round of sends at a time
	kv   jetstream.KeyValue
	once sync.Once
	err  error
}

type templates struct {
	subject, text *texttemplate.Template
	html          *htmltemplate.Template
}

var funcs = map[string]any{
	"date": func(d subscription.Date, layout string) string {
		t, err := time.Parse("2006-01-02", d.String())
		if err != nil {
			return d.String()
		}
		return t.Format(layout)
	},
}

// LoadTemplates compiles the morning templates from fsys (templates.MorningFS).
func (s *Sender) LoadTemplates(fsys fs.FS) error {
	read := func(name string) (string, error) {
		b, err := fs.ReadFile(fsys, "morning/"+name)
		if err != nil {
			return "", fmt.Errorf("morning templates: %w", err)
		}
		return string(b), nil
	}
	sub, err := read("subject.txt")
	if err != nil {
		return err
	}
	txt, err := read("body.txt")
	if err != nil {
		return err
	}
	htm, err := read("body.html")
	if err != nil {
		return err
	}
	if s.tpl.subject, err = texttemplate.New("subject").Option("missingkey=error").Funcs(funcs).Parse(sub); err != nil {
		return fmt.Errorf("morning templates: subject.txt: %w", err)
	}
	if s.tpl.text, err = texttemplate.New("text").Option("missingkey=error").Funcs(funcs).Parse(txt); err != nil {
		return fmt.Errorf("morning templates: body.txt: %w", err)
	}
	if s.tpl.html, err = htmltemplate.New("html").Option("missingkey=error").Funcs(funcs).Parse(htm); err != nil {
		return fmt.Errorf("morning templates: body.html: %w", err)
	}
	// Execute once with sample data, so a template that parses but cannot
	// run stops the start, not a morning.
	_, err = s.render(Data{Rep: "Sample Rep", Day: subscription.MustDate("2027-03-01"), Reseller: "Sample", Entries: []calllist.Entry{{
		Rank: 1, Category: calllist.Callback, Reason: "callback due today", SubscriptionID: "1", EndDate: subscription.MustDate("2027-03-31"),
		LastCall: &calllist.LastCall{Outcome: subscription.CallCallback, CallbackOn: subscription.MustDate("2027-03-01")},
	}}})
	return err
}

func (s *Sender) render(d Data) (Message, error) {
	var sub, txt, htm strings.Builder
	if err := s.tpl.subject.Execute(&sub, d); err != nil {
		return Message{}, fmt.Errorf("render morning subject: %w", err)
	}
	if err := s.tpl.text.Execute(&txt, d); err != nil {
		return Message{}, fmt.Errorf("render morning text: %w", err)
	}
	if err := s.tpl.html.Execute(&htm, d); err != nil {
		return Message{}, fmt.Errorf("render morning html: %w", err)
	}
	return Message{Subject: subscription.OneLine(sub.String()), Text: txt.String(), HTML: htm.String()}, nil
}

// Working reports whether day is a working day (Monday to Friday).
func Working(day subscription.Date) bool {
	t, err := time.Parse("2006-01-02", day.String())
	if err != nil {
		return false
	}
	wd := t.Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// Result counts what one round did.
type Result struct {
	Sent, AlreadySent, Failed int
}

// Send sends each rep's list for day, unless it was sent (or is being sent)
// already. Weekends send nothing. A rep whose send fails is counted and
// logged, and tried again on the next round; the error is the first such.
func (s *Sender) Send(ctx context.Context, day subscription.Date) (Result, error) {
	var res Result
	if len(s.Reps) == 0 || !Working(day) {
		return res, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kv, err := s.bucket(ctx)
	if err != nil {
		return res, err
	}
	var first error
	for _, rep := range s.Reps {
		ok, err := s.sendOne(ctx, kv, rep, day)
		switch {
		case err != nil:
			res.Failed++
			first = cmpErr(first, err)
			s.Log.Warn("morning list not sent; it is tried again on the next pass", zap.Stringer("day", day), zap.Error(err))
		case ok:
			res.Sent++
		default:
			res.AlreadySent++
		}
	}
	s.Log.Info("morning lists", zap.Stringer("day", day), zap.Int("sent", res.Sent), zap.Int("already_sent", res.AlreadySent), zap.Int("failed", res.Failed))
	return res, first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (s *Sender) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.once.Do(func() {
		s.kv, s.err = s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: Bucket, Description: "renewals: the reps' morning lists sent, one key per rep and day (no names)",
			History: 1, Storage: jetstream.FileStorage,
		})
		if s.err != nil {
			s.err = fmt.Errorf("declare key-value bucket %s: %w", Bucket, s.err)
		}
	})
	return s.kv, s.err
}

// Key is the bucket key of rep's list for day: a digest of the rep's
// email, and the day.
func Key(rep Rep, day subscription.Date) string {
	sum := sha256.Sum256([]byte(strings.ToLower(rep.Email)))
	return hex.EncodeToString(sum[:8]) + "." + day.String()
}

// sendOne claims, sends and confirms one rep's list; false without error
// when it was sent or is being sent.
func (s *Sender) sendOne(ctx context.Context, kv jetstream.KeyValue, rep Rep, day subscription.Date) (bool, error) {
	key := Key(rep, day)
	now := s.Now()
	claim := []byte("claimed " + now.UTC().Format(time.RFC3339Nano))
	rev, err := kv.Create(ctx, key, claim)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := kv.Get(ctx, key)
		if gerr != nil {
			return false, fmt.Errorf("read morning list state: %w", gerr)
		}
		v := string(e.Value())
		at, perr := time.Parse(time.RFC3339Nano, strings.TrimPrefix(v, "claimed "))
		if !strings.HasPrefix(v, "claimed ") || perr != nil || now.Sub(at) < ClaimLease {
			return false, nil // sent, or another process is sending it now
		}
		if rev, err = kv.Update(ctx, key, claim, e.Revision()); err != nil {
			return false, nil // another process took it over first
		}
	} else if err != nil {
		return false, fmt.Errorf("claim morning list: %w", err)
	}
	entries, err := s.Lister.List(ctx, day, calllist.Filter{ResellerRep: rep.Name})
	if err != nil {
		_ = kv.Delete(ctx, key, jetstream.LastRevision(rev))
		return false, err
	}
	m, err := s.render(Data{Rep: rep.Name, Day: day, Entries: entries, Reseller: s.Reseller})
	if err != nil {
		_ = kv.Delete(ctx, key, jetstream.LastRevision(rev))
		return false, err
	}
	m.To, m.ToName, m.ID = rep.Email, rep.Name, "morning-"+strings.ReplaceAll(key, ".", "-")
	if err := s.Mail.Send(ctx, m); err != nil {
		_ = kv.Delete(ctx, key, jetstream.LastRevision(rev))
		return false, fmt.Errorf("send morning list: %w", err)
	}
	if _, err := kv.Update(ctx, key, []byte("sent "+s.Now().UTC().Format(time.RFC3339Nano)), rev); err != nil {
		return true, fmt.Errorf("morning list sent, but not recorded as sent: %w", err)
	}
	return true, nil
}
