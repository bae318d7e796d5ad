package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/event"
	"renewals/pkg/mailer"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/notifier"
)

// contractEnd is the end date of the contract tests' subscriptions: 30
// days after faultAsOf, so the 30-day notice is due.
var contractEnd = subscription.MustDate(faultAsOf).AddDays(30)

// importContractCSV imports rows, each "id,contract_number,cm_email", as
// active subscriptions ending on end.
func (r *faultRig) importContractCSV(t *testing.T, end subscription.Date, rows ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("subscription_id,contract_number,cm_email,end_date,cm_name,product,seats,seats_assigned\n")
	for i, row := range rows {
		fmt.Fprintf(&b, "%s,%s,Manager,Product %d,10,%d\n", row, end, i+1, 10-i)
	}
	path := filepath.Join(t.TempDir(), "contract.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := r.api.CLI(t, "import", path); res.Code != 0 {
		t.Fatalf("import: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
}

// received returns, for each email the SMTP server took, its
// X-Renewal-Notice keys in header order.
func (r *faultRig) received(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, m := range r.smtp.Messages() {
		msg, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(msg.Header.Get(mailer.HeaderNotice), ", "))
	}
	return out
}

func noticeKey(id string) subscription.NoticeKey {
	return subscription.NoticeKey{SubscriptionID: id, EndDate: contractEnd, Milestone: 30}
}

func keyStrings(ks ...subscription.NoticeKey) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.String()
	}
	return out
}

// TestContractOneEmailPerMilestone: a contract of three co-termed
// subscriptions gets one email with three keys; a second pass sends
// nothing; a contract whose third subscription is renewed between the pass
// and the send gets one email with the other two keys; a subscription
// without a contract number, and one of the same contract with another
// contract manager, get their own emails.
func TestContractOneEmailPerMilestone(t *testing.T) {
	r := newFaultRig(t, "")
	r.importContractCSV(t, contractEnd,
		"330000000001,7001,cm@acme.example",
		"330000000002,7001,CM@acme.example",
		"330000000003,7001,cm@acme.example",
		"330000000004,7002,ops@beta.example",
		"330000000005,7002,ops@beta.example",
		"330000000006,7002,ops@beta.example",
		"330000000007,,solo@gamma.example",
		"330000000008,7001,other@acme.example",
		"330000000009,7003,it@delta.example",
		"330000000010,7003,it@delta.example",
		"330000000011,7003,it@delta.example",
	)
	r.pass(t)
	// After the pass published its events, before any send: one renewed,
	// one moved to another contract.
	r.importContractCSV(t, contractEnd.AddDays(365), "330000000006,7002,ops@beta.example")
	r.importContractCSV(t, contractEnd, "330000000011,7099,it@delta.example")

	r.startNotifier(t, nil)
	all := []subscription.NoticeKey{noticeKey("330000000001"), noticeKey("330000000002"), noticeKey("330000000003"),
		noticeKey("330000000004"), noticeKey("330000000005"), noticeKey("330000000007"), noticeKey("330000000008"),
		noticeKey("330000000009"), noticeKey("330000000010"), noticeKey("330000000011")}
	r.waitSent(t, 30*time.Second, all)
	renewed := noticeKey("330000000006")
	var e subscription.Entry
	testenv.Eventually(t, 30*time.Second, "the renewed subscription's notice skipped", func() bool {
		var err error
		e, err = r.ledger.Get(context.Background(), renewed)
		return err == nil && e.Outcome == subscription.OutcomeSkipped
	})
	if !strings.Contains(e.Reason, "renewed") {
		t.Errorf("renewed notice skipped for %q, want the renewal named", e.Reason)
	}

	want := [][]string{
		keyStrings(noticeKey("330000000001"), noticeKey("330000000002"), noticeKey("330000000003")),
		keyStrings(noticeKey("330000000004"), noticeKey("330000000005")),
		keyStrings(noticeKey("330000000007")),
		keyStrings(noticeKey("330000000008")),
		keyStrings(noticeKey("330000000009"), noticeKey("330000000010")),
		keyStrings(noticeKey("330000000011")),
	}
	got := r.received(t)
	slices.SortFunc(got, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("emails by X-Renewal-Notice:\n got %q\nwant %q", got, want)
	}
	// The contract's email lists every subscription with its seats, and
	// goes to its contract manager alone.
	for _, m := range r.smtp.Messages() {
		msg, _ := m.Parse()
		if !strings.HasPrefix(msg.Header.Get(mailer.HeaderNotice), noticeKey("330000000001").String()+",") {
			continue
		}
		if len(m.To) != 1 || !strings.EqualFold(m.To[0], "cm@acme.example") {
			t.Errorf("contract email to %v, want the contract manager alone", m.To)
		}
		if s := msg.Header.Get("Subject"); !strings.Contains(s, "contract 7001 (3 subscriptions)") {
			t.Errorf("subject %q does not name the contract and its 3 subscriptions", s)
		}
		body := string(m.Data)
		for _, want := range []string{"330000000001", "330000000002", "330000000003", "Product 1", "Product 3", "Seats: 10, 2 unused"} {
			if !strings.Contains(body, want) {
				t.Errorf("contract email lacks %q", want)
			}
		}
	}

	// Once every due event is acknowledged, each key was settled once: the
	// renewed one's claim was taken once, not again by the other
	// deliveries of its contract; the moved one's twice (by its old
	// contract's email, which released it, then by its own event).
	r.waitIdle(t)
	for _, k := range append(all, renewed) {
		want := 1
		if k == noticeKey("330000000011") {
			want = 2
		}
		if e, err := r.ledger.Get(context.Background(), k); err != nil || e.Attempts != want {
			t.Errorf("ledger entry of %s: %+v, %v; want %d attempts", k, e, err, want)
		}
	}

	// A second pass finds everything sent: nothing is published, no email.
	res := r.api.CLI(t, "run", "--as-of", faultAsOf)
	if res.Code != 0 || !strings.Contains(res.Stdout, "0 due, 10 already sent") || !strings.Contains(res.Stdout, "published 0") {
		t.Fatalf("second pass: exit %d: %s %s; want 0 due, 10 already sent, published 0", res.Code, res.Stdout, res.Stderr)
	}
	if n := len(r.smtp.Messages()); n != 6 {
		t.Errorf("%d emails after the second pass, want the 6 of the first", n)
	}
}

// TestContractKilledAtEachStep: the notifier is SIGKILLed after the first
// of the three claims of a contract email, after its send, or after its
// confirm. After a restart each key is received exactly once, in one email,
// except after the send, the SMTP gap: then the email goes once more, and
// each of its keys is flagged ambiguous.
func TestContractKilledAtEachStep(t *testing.T) {
	for i, step := range []string{"after-claim", "after-send", "after-confirm"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			r := newFaultRig(t, "")
			ids := []string{fmt.Sprintf("34%d000000001", i), fmt.Sprintf("34%d000000002", i), fmt.Sprintf("34%d000000003", i)}
			r.importContractCSV(t, contractEnd, ids[0]+",8001,cm@acme.example", ids[1]+",8001,cm@acme.example", ids[2]+",8001,cm@acme.example")
			keys := []subscription.NoticeKey{noticeKey(ids[0]), noticeKey(ids[1]), noticeKey(ids[2])}
			victim := r.startNotifier(t, map[string]string{"RENEWALS_FAULT_PAUSE": step, "RENEWALS_WORKERS": "1"})
			r.pass(t)
			victim.waitLine(t, "fault-pause "+step, 15*time.Second)
			victim.kill()
			before := len(r.smtp.Messages())
			if step == "after-claim" && before != 0 {
				t.Fatalf("%d emails before the kill after the first claim", before)
			}

			r.startNotifier(t, nil)
			r.waitSent(t, 30*time.Second, keys)
			got := r.received(t)
			one := keyStrings(keys...)
			want, flags := [][]string{one}, 0
			if step == "after-send" {
				want, flags = [][]string{one, one}, 3
			}
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("emails by X-Renewal-Notice after the restart:\n got %q\nwant %q", got, want)
			}
			if f := r.flagged(t, keys); f != flags {
				t.Errorf("%d keys flagged ambiguous, want %d", f, flags)
			}
			t.Logf("killed %s: %d email(s) before the kill, %d in all: %q", step, before, len(got), got)
		})
	}
}

// waitIdle waits until the notifier's consumer has no due event left to
// deliver or to be acknowledged.
func (r *faultRig) waitIdle(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(r.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "every due event acknowledged", func() bool {
		c, err := js.Consumer(context.Background(), event.StreamName, notifier.DefaultConsumer.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}
