package natsbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/event"
	"renewals/pkg/kvstore"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
)

// openEmbedded starts the embedded server as `serve` does, on a free port,
// storing under and keeping its passwords in dir.
func openEmbedded(t *testing.T, dir string) *natsbus.Bus {
	t.Helper()
	bus, err := natsbus.Open(context.Background(), natsbus.Config{
		Listen: "127.0.0.1:-1", StoreDir: dir + "/nats", SecretsDir: dir, Name: "natsbus test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	return bus
}

// TestEmbeddedServerAdmitsOnlyItsUsers: no client connects to the embedded
// server without a password, or with another user's; the passwords are
// generated into the data dir with mode 0600 and kept across restarts.
func TestEmbeddedServerAdmitsOnlyItsUsers(t *testing.T) {
	dir := t.TempDir()
	bus := openEmbedded(t, dir)
	url := bus.Server.ClientURL()
	creds := bus.Credentials
	for _, f := range []string{creds.ServiceFile, creds.DashboardFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if creds.Service == creds.Dashboard || len(creds.Service) < 32 {
		t.Fatalf("passwords %q and %q: want two different long random ones", creds.Service, creds.Dashboard)
	}

	refused := []struct {
		what string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"a wrong password", []nats.Option{nats.UserInfo(natsbus.ServiceUser, "not-the-password")}},
		{"the dashboard's password for the service user", []nats.Option{nats.UserInfo(natsbus.ServiceUser, creds.Dashboard)}},
		{"an unknown user", []nats.Option{nats.UserInfo("admin", creds.Service)}},
	}
	for _, c := range refused {
		nc, err := nats.Connect(url, c.opts...)
		if err == nil {
			nc.Close()
			t.Errorf("connect with %s: connected, want refused", c.what)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connect with %s: %v, want %v", c.what, err, nats.ErrAuthorization)
		}
	}
	for user, pw := range map[string]string{natsbus.ServiceUser: creds.Service, natsbus.DashboardUser: creds.Dashboard} {
		nc, err := nats.Connect(url, nats.UserInfo(user, pw))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		nc.Close()
	}

	// A restart on the same data dir keeps the passwords.
	bus.Close()
	again := openEmbedded(t, dir)
	if again.Credentials != creds {
		t.Errorf("after a restart: credentials %+v, want %+v", again.Credentials, creds)
	}
	nc, err := nats.Connect(again.Server.ClientURL(), nats.UserInfo(natsbus.DashboardUser, creds.Dashboard))
	if err != nil {
		t.Fatalf("connect as dashboard after a restart: %v", err)
	}
	nc.Close()
	if hint := again.Credentials.Hint(again.Server.ClientURL()); !strings.Contains(hint, "--user dashboard --password \"$(cat "+creds.DashboardFile+")\"") {
		t.Errorf("hint %q does not say how to connect as the dashboard", hint)
	}
}

// violations records the permission violations the server reports on a
// connection.
type violations struct {
	mu   sync.Mutex
	errs []string
	ch   chan struct{}
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
	select {
	case v.ch <- struct{}{}:
	default:
	}
}

// wait returns once the server has reported a violation whose text contains
// want, failing the test after 5 seconds.
func (v *violations) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		v.mu.Lock()
		for _, e := range v.errs {
			if strings.Contains(e, want) {
				v.mu.Unlock()
				return
			}
		}
		got := strings.Join(v.errs, "; ")
		v.mu.Unlock()
		select {
		case <-v.ch:
		case <-deadline:
			t.Fatalf("no permissions violation %s within 5s; seen: %s", want, got)
		}
	}
}

func (v *violations) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.errs)
}

// TestDashboardUserIsReadOnly: the dashboard user receives the events and
// reads the RENEWALS stream, but cannot read a key-value bucket or the data
// keys, publish on the due or ingest subjects, touch the notifier's
// consumer, or see the replies to the service's own requests.
func TestDashboardUserIsReadOnly(t *testing.T) {
	ctx := context.Background()
	bus := openEmbedded(t, t.TempDir())
	url := bus.Server.ClientURL()
	store, _, err := kvstore.New(ctx, bus.JS)
	if err != nil {
		t.Fatal(err)
	}

	v := &violations{ch: make(chan struct{}, 1)}
	dnc, err := nats.Connect(url, nats.UserInfo(natsbus.DashboardUser, bus.Credentials.Dashboard), nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer dnc.Close()
	// A second dashboard connection listens on every _INBOX reply while the
	// service reads and writes its buckets.
	wnc, err := nats.Connect(url, nats.UserInfo(natsbus.DashboardUser, bus.Credentials.Dashboard))
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	inboxes, err := wnc.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := wnc.Flush(); err != nil {
		t.Fatal(err)
	}

	var events []*nats.Subscription
	for _, subj := range natsbus.EventSubjects {
		sub, err := dnc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, sub)
	}
	if err := dnc.Flush(); err != nil {
		t.Fatal(err)
	}

	// The service stores a subscription (its record, index entry and data
	// key) and reads it back, then publishes an event.
	const id = "110000000001"
	sub := subscription.Subscription{
		ID: id, EndDate: subscription.MustDate("2027-03-31"), Status: subscription.StatusActive,
		ContractManager: subscription.Contact{Name: "Carol Manager", Email: "carol@customer.example"},
	}
	if _, err := store.Upsert(ctx, []subscription.Subscription{sub}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, id); err != nil {
		t.Fatal(err)
	}
	key := subscription.NoticeKey{SubscriptionID: id, EndDate: sub.EndDate, Milestone: 30}
	ev, err := event.New(event.OutcomeSubject(subscription.OutcomeSent), key.String(), time.Now(), event.NoticeOutcome{
		NoticeKey: key, SubscriptionID: id, EndDate: sub.EndDate, Milestone: 30, Outcome: subscription.OutcomeSent,
	})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := natsbus.Publish(ctx, bus.JS, event.OutcomeSubject(subscription.OutcomeSent), ev, "")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("receives the events", func(t *testing.T) {
		m, err := events[0].NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("dashboard did not receive %s: %v", event.OutcomeSubject(subscription.OutcomeSent), err)
		}
		if m.Subject != event.OutcomeSubject(subscription.OutcomeSent) || !strings.Contains(string(m.Data), key.String()) {
			t.Errorf("dashboard received %s %s", m.Subject, m.Data)
		}
	})

	t.Run("never sees the service's replies", func(t *testing.T) {
		// Every reply to the service went out before the service returned;
		// a flush of the listener afterwards has its copy, if any, ahead of
		// the PONG.
		if err := wnc.Flush(); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := inboxes.Pending(); n != 0 {
			m, _ := inboxes.NextMsg(0)
			t.Fatalf("a dashboard on _INBOX.> received %d of the service's replies, e.g. %s: %.200s", n, m.Subject, m.Data)
		}
	})

	t.Run("reads the RENEWALS stream", func(t *testing.T) {
		djs, err := jetstream.New(dnc)
		if err != nil {
			t.Fatal(err)
		}
		st, err := djs.Stream(ctx, event.StreamName)
		if err != nil {
			t.Fatalf("dashboard: stream info %s: %v", event.StreamName, err)
		}
		m, err := st.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatalf("dashboard: get message %d of %s: %v", ack.Sequence, event.StreamName, err)
		}
		if !strings.Contains(string(m.Data), key.String()) {
			t.Errorf("dashboard read %s", m.Data)
		}
		if n := v.count(); n != 0 {
			t.Errorf("%d permission violations on what a dashboard may do: %v", n, v.errs)
		}
	})

	t.Run("cannot read the key-value buckets through the API", func(t *testing.T) {
		djs, err := jetstream.New(dnc)
		if err != nil {
			t.Fatal(err)
		}
		for _, bucket := range []string{kvstore.SubscriptionsBucket, kvstore.LedgerBucket} {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := djs.KeyValue(cctx, bucket)
			cancel()
			if err == nil {
				t.Errorf("dashboard opened the key-value bucket %s", bucket)
			}
			v.wait(t, `Publish to "$JS.API.STREAM.INFO.KV_`+bucket+`"`)
		}
	})

	// Each of these would read personal data or a data key, send a notice,
	// change a subscription, or steal, change or acknowledge the notifier's
	// deliveries. The server must refuse each one.
	forbiddenPublish := []string{
		event.SubjectDue(30),
		event.SubjectIngest,
		"$KV." + kvstore.SubscriptionsBucket + "." + id,
		"$KV." + kvstore.LedgerBucket + "." + id + ".2027-03-31.30",
		"$JS.API.DIRECT.GET.KV_" + kvstore.SubscriptionsBucket + ".$KV." + kvstore.SubscriptionsBucket + "." + id,
		"$JS.API.DIRECT.GET.KV_" + kvstore.SubscriptionsBucket,
		"$JS.API.STREAM.MSG.GET.KV_" + kvstore.SubscriptionsBucket,
		"$JS.API.DIRECT.GET." + kvstore.KeysStream + "." + kvstore.KeysSubjectPrefix + id,
		"$JS.API.STREAM.MSG.GET." + kvstore.KeysStream,
		"$JS.API.STREAM.PURGE." + event.StreamName,
		"$JS.API.STREAM.DELETE." + event.StreamName,
		"$JS.API.STREAM.UPDATE." + event.StreamName,
		"$JS.API.CONSUMER.CREATE." + event.StreamName + ".notifier",
		"$JS.API.CONSUMER.CREATE." + event.StreamName,
		"$JS.API.CONSUMER.DURABLE.CREATE." + event.StreamName + ".notifier",
		"$JS.API.CONSUMER.MSG.NEXT." + event.StreamName + ".notifier",
		"$JS.API.CONSUMER.DELETE." + event.StreamName + ".notifier",
		"$JS.ACK." + event.StreamName + ".notifier.1.1.1.1.0",
		natsbus.InboxPrefix + ".reply",
	}
	t.Run("cannot publish on the due, ingest, bucket or consumer subjects", func(t *testing.T) {
		ingest, err := bus.Conn.SubscribeSync(event.SubjectIngest)
		if err != nil {
			t.Fatal(err)
		}
		defer ingest.Unsubscribe()
		st, err := bus.JS.Stream(ctx, event.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		before, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		due, err := event.New(event.SubjectDue(30), key.String(), time.Now(), event.NoticeDue{
			NoticeKey: key, SubscriptionID: id, EndDate: sub.EndDate, Milestone: 30, DaysLeft: 30,
		})
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(due)
		if err != nil {
			t.Fatal(err)
		}
		for _, subj := range forbiddenPublish {
			m := nats.NewMsg(subj)
			m.Reply = dnc.NewRespInbox()
			m.Data = body
			m.Header.Set(jetstream.MsgIDHeader, "forged-"+subj)
			if err := dnc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			if err := dnc.Flush(); err != nil {
				t.Fatal(err)
			}
			v.wait(t, `Publish to "`+subj+`"`)
		}
		// Nothing reached the service's ingest responder or the stream.
		if err := bus.Conn.Flush(); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := ingest.Pending(); n != 0 {
			t.Errorf("the service received %d ingest requests from the dashboard", n)
		}
		after, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.State.LastSeq != before.State.LastSeq {
			t.Errorf("RENEWALS went from sequence %d to %d under the dashboard's publishes", before.State.LastSeq, after.State.LastSeq)
		}
	})

	t.Run("cannot subscribe to buckets, data keys, ingest or the service's replies", func(t *testing.T) {
		for _, subj := range []string{
			"$KV.>",
			"$KV." + kvstore.SubscriptionsBucket + ".>",
			kvstore.KeysSubjectPrefix + ">",
			event.SubjectIngest,
			"renewals.>",
			natsbus.InboxPrefix + ".>",
			"$JS.API.>",
			">",
		} {
			if _, err := dnc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			if err := dnc.Flush(); err != nil {
				t.Fatal(err)
			}
			v.wait(t, `Subscription to "`+subj+`"`)
		}
	})
}
