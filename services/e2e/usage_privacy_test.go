package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"renewals/pkg/kvstore"
	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/services/calllist"
)

// usageMarks are in every first name, last name, email address and hashed
// vendor id of the usage export's users, and in nothing else that the test
// or the server writes: a byte string that holds any user's name, address
// or id holds a mark. The search ignores case, since the importer
// lower-cases some of what it reads (the product of a contract's row).
var usageMarks = [][]byte{[]byte("ulfrida"), []byte("quenby"), []byte("usage-privacy.example"), []byte("zqxuid")}

// usageUser is the user of one row of the export.
type usageUser struct{ first, last, email, id string }

// newUsageUser returns user i, unique for i below 26^4.
func newUsageUser(i int) usageUser {
	var s [4]byte // i in base 26, as letters: names without digits
	for j, n := len(s)-1, i; j >= 0; j, n = j-1, n/26 {
		s[j] = byte('a' + n%26)
	}
	tag := string(s[:])
	return usageUser{
		first: "Ulfrida" + tag,
		last:  "Quenby" + string([]byte{s[3], s[2], s[1], s[0]}),
		email: "ulfrida." + tag + ".quenby@usage-privacy.example",
		id:    fmt.Sprintf("ZQXUID%08X", uint32(i)*2654435761),
	}
}

// usageSub is a subscription of the test and what its users give.
type usageSub struct {
	id, end, product, contract string
	seats, daysLeft, milestone int
	cmName, cmEmail            string
	// rows of the export are its users; byContract rows name it by contract
	// number and product (in one of spellings), not by id.
	rows       int
	byContract bool
	spellings  []string
	// maxIdle bounds its users' days inactive (exclusive); never is the
	// share of its users who never used it.
	maxIdle int
	never   float64
}

// usageCounts are the counts a subscription should end with.
type usageCounts struct{ users, u30, u60, u90 int }

// add counts a user inactive for that many days (-1: never used).
func (c *usageCounts) add(inactive int) {
	c.users++
	if inactive < 0 || inactive >= 30 {
		c.u30++
	}
	if inactive < 0 || inactive >= 60 {
		c.u60++
	}
	if inactive < 0 || inactive >= 90 {
		c.u90++
	}
}

// line is what the call list and the notice say of the counts: the longest
// span with a count, of the subscription's seats.
func (c usageCounts) line(seats int) string {
	n, days := c.u30, 30
	switch {
	case c.u90 > 0:
		n, days = c.u90, 90
	case c.u60 > 0:
		n, days = c.u60, 60
	}
	return fmt.Sprintf("%d of %d seats unused for %d+ days", n, seats, days)
}

// usageExport is the vendor's usage export of the test, as its portal
// writes it, and what it should come to.
type usageExport struct {
	csv      []byte
	counts   map[string]usageCounts // by subscription id
	rejected int                    // the line of the one bad row
}

const (
	usageAsOf    = "2027-02-14"
	usageRows    = 10000
	usageUnknown = "179999999999" // a subscription id that is not stored
)

// The subscriptions: two named by id, two by contract and product (contract
// CN-170 also holds AutoCAD, named by id, so that the product decides). Their ends fall 45, 40, 60 and 80 days after usageAsOf, on
// different days, so that each gets an email of its own. AutoCAD and
// Revit have users idle for 90 days and more, Inventor only up to 89 (its
// line says 60+), Maya only up to 59 (30+).
var usageSubs = []usageSub{
	{id: "170000000001", end: "2027-03-31", product: "AutoCAD", contract: "CN-170", seats: 4500, daysLeft: 45, milestone: 45,
		cmName: "Carla Example", cmEmail: "cm.autocad@customer.example", rows: 4001, maxIdle: 400, never: 0.05},
	{id: "170000000002", end: "2027-03-26", product: "Inventor", seats: 3000, daysLeft: 40, milestone: 45,
		cmName: "Cem Example", cmEmail: "cm.inventor@customer.example", rows: 2500, maxIdle: 90},
	{id: "170000000003", end: "2027-04-15", product: "Revit", contract: "CN-170", seats: 2200, daysLeft: 60, milestone: 90,
		cmName: "Dora Example", cmEmail: "cm.revit@customer.example", rows: 2000, byContract: true,
		spellings: []string{"Revit", "revit", "REVIT "}, maxIdle: 200, never: 0.02},
	{id: "170000000004", end: "2027-05-05", product: "Maya", contract: "CN-171", seats: 1600, daysLeft: 80, milestone: 90,
		cmName: "Emil Example", cmEmail: "cm.maya@customer.example", rows: 1480, byContract: true,
		spellings: []string{"Maya", "MAYA"}, maxIdle: 60},
}

// newUsageExport writes 10,000 user rows: the users of usageSubs, 10 of a
// subscription that is not stored, 9 of a product that contract CN-170
// does not have, and one whose days inactive holds the user's address (its
// columns shifted), which is rejected. Users give their last use as days
// inactive, as a date, as a date and time, as "never" or not at all, a few
// as a day after the export (not idle).
func newUsageExport(t *testing.T) usageExport {
	t.Helper()
	asOf, err := time.Parse(time.DateOnly, usageAsOf)
	if err != nil {
		t.Fatal(err)
	}
	// Which subscription each row is of (-1: the unknown id, -2: the
	// unknown product, -3: the bad row), in a shuffled order.
	var of []int
	for i, s := range usageSubs {
		for range s.rows {
			of = append(of, i)
		}
	}
	for range 10 {
		of = append(of, -1)
	}
	for range 9 {
		of = append(of, -2)
	}
	rng := rand.New(rand.NewPCG(14, 3))
	rng.Shuffle(len(of), func(i, j int) { of[i], of[j] = of[j], of[i] })
	// The bad row is of AutoCAD (which has one row more for it).
	for i, x := range of {
		if x == 0 {
			of[i] = -3
			break
		}
	}
	if len(of) != usageRows {
		t.Fatalf("the export has %d rows, want %d", len(of), usageRows)
	}
	ex := usageExport{counts: map[string]usageCounts{}}
	var b bytes.Buffer
	b.WriteString("Email,First Name,Last Name,Hashed Autodesk ID,Subscription ID,Contract Number,Product Name,Last Accessed,Days Inactive\r\n")
	for i, x := range of {
		u := newUsageUser(i)
		fmt.Fprintf(&b, "%s,%s,%s,%s,", u.email, u.first, u.last, u.id)
		switch x {
		case -1:
			fmt.Fprintf(&b, "%s,,,,%d\r\n", usageUnknown, rng.IntN(200))
			continue
		case -2:
			fmt.Fprintf(&b, ",CN-170,3ds Max,,%d\r\n", rng.IntN(200))
			continue
		case -3:
			ex.rejected = i + 2 // the header is line 1
			fmt.Fprintf(&b, "%s,,,,%s\r\n", usageSubs[0].id, u.email)
			continue
		}
		s := usageSubs[x]
		if s.byContract {
			fmt.Fprintf(&b, ",%s,%s,", s.contract, s.spellings[rng.IntN(len(s.spellings))])
		} else {
			fmt.Fprintf(&b, "%s,,,", s.id)
		}
		c := ex.counts[s.id]
		if rng.Float64() < s.never {
			c.add(-1)
			if rng.IntN(2) == 0 {
				b.WriteString("never,\r\n")
			} else {
				b.WriteString(",\r\n")
			}
			ex.counts[s.id] = c
			continue
		}
		d := rng.IntN(s.maxIdle)
		last := asOf.AddDate(0, 0, -d)
		switch rng.IntN(20) {
		case 0: // used after the day of the export: 0 days inactive
			c.add(0)
			fmt.Fprintf(&b, "%s,\r\n", asOf.AddDate(0, 0, 1+rng.IntN(3)).Format(time.DateOnly))
		case 1, 2, 3, 4, 5, 6:
			c.add(d)
			fmt.Fprintf(&b, ",%d\r\n", d)
		case 7, 8, 9, 10, 11:
			c.add(d)
			fmt.Fprintf(&b, "%s,\r\n", last.Add(time.Duration(rng.IntN(86400))*time.Second).Format(time.DateTime))
		default:
			c.add(d)
			fmt.Fprintf(&b, "%s,\r\n", last.Format(time.DateOnly))
		}
		ex.counts[s.id] = c
	}
	ex.csv = b.Bytes()
	// The counts must tell the spans apart (each smaller than the last,
	// zero only where the users' idle days stop short of the span), or the
	// test would not show that each is reckoned.
	for i, s := range usageSubs {
		c, users := ex.counts[s.id], s.rows
		if i == 0 {
			users-- // the rejected row
		}
		if c.users != users || c.u30 == 0 || c.u30 == c.u60 || (c.u90 > 0 && c.u60 == c.u90) ||
			(c.u60 > 0) != (s.maxIdle > 60) || (c.u90 > 0) != (s.maxIdle > 90) {
			t.Fatalf("the export's counts of %s are trivial: %+v", s.id, c)
		}
	}
	return ex
}

// TestUsageImportStoresOnlyCounts imports subscriptions, then the vendor's
// usage export of 10,000 users, on the embedded store and on Redis: the
// report, the stored counts, the call list and the notices are as the
// export says, and no user's name, address or id is in any stored byte
// (every stream message, every key and value, every file), in any
// subscription as the store decodes it (personal fields are sealed, so a
// byte search cannot see into them), in the logs, the emails or the CLI's
// output.
func TestUsageImportStoresOnlyCounts(t *testing.T) {
	ex := newUsageExport(t)
	dir := t.TempDir() // the test's files, outside every server's data dir
	var subsCSV strings.Builder
	subsCSV.WriteString("subscription_id,end_date,customer_account,product,seats,contract_number,cm_name,cm_email\n")
	for _, s := range usageSubs {
		fmt.Fprintf(&subsCSV, "%s,%s,Acme Engineering,%s,%d,%s,%s,%s\n", s.id, s.end, s.product, s.seats, s.contract, s.cmName, s.cmEmail)
	}
	subsFile, usageFile := filepath.Join(dir, "subscriptions.csv"), filepath.Join(dir, "Usage report.csv")
	if err := os.WriteFile(subsFile, []byte(subsCSV.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(usageFile, ex.csv, 0o600); err != nil {
		t.Fatal(err)
	}
	wantReport := func(updated int) string {
		counted := 0
		for _, c := range ex.counts {
			counted += c.users
		}
		return fmt.Sprintf("%d user rows: %d counted, 1 rejected, 19 unmatched; seat usage as of %s stored for 4 subscriptions (%d updated, %d unchanged)\n",
			usageRows, counted, usageAsOf, updated, 4-updated) +
			fmt.Sprintf("line %d: days_inactive: is not a number of days: use a whole number of 0 or more\n", ex.rejected) +
			"not counted: contract CN-170, product 3ds max: no stored subscription of the contract has that product\n" +
			"not counted: subscription " + usageUnknown + ": no such subscription is stored\n"
	}

	eachBackend(t, func(t *testing.T, b *backend) {
		s := b.srv
		ctx := context.Background()
		start := time.Now()
		leaks := &identityCheck{t: t}
		var out []string // everything the CLI printed
		cli := func(want int, args ...string) string {
			t.Helper()
			r := s.CLI(t, args...)
			out = append(out, r.Stdout, r.Stderr)
			if r.Code != want {
				t.Fatalf("renewals %s: exit %d, want %d\n%s%s", strings.Join(args, " "), r.Code, want, r.Stdout, r.Stderr)
			}
			return r.Stdout
		}
		var rc *redis.Client
		if b.redis != nil {
			rc = b.redis.Client(t)
			// An uncompressed RDB preamble in the AOF base file, so that the
			// file scan below reads its values.
			if err := rc.ConfigSet(ctx, "rdbcompression", "no").Err(); err != nil {
				t.Fatal(err)
			}
		}

		waitStartupPass(t, s)
		if got := cli(0, "import", subsFile); !strings.HasPrefix(got, "4 rows: 4 created, 0 updated, 0 unchanged, 0 rejected\n") {
			t.Fatalf("import of the subscriptions:\n%s", got)
		}
		before := usageCallList(t, cli)
		for _, sub := range usageSubs {
			if e := before[sub.id]; e.Usage != nil || strings.Contains(e.Reason, "unused for") {
				t.Errorf("%s has seat usage before the usage import: %+v", sub.id, e)
			}
		}

		// The import, and the same file again: nothing changes the second
		// time. A rejected row makes the exit status 1.
		if got, want := cli(1, "import-usage", usageFile, "--as-of", usageAsOf), wantReport(4); got != want {
			t.Errorf("import-usage report:\n%s\nwant:\n%s", got, want)
		}
		if got, want := cli(1, "import-usage", usageFile, "--as-of", usageAsOf), wantReport(0); got != want {
			t.Errorf("import-usage report, the same file again:\n%s\nwant:\n%s", got, want)
		}

		// The counts, as the call list answers them, and its reasons.
		after := usageCallList(t, cli)
		for _, sub := range usageSubs {
			c, e := ex.counts[sub.id], after[sub.id]
			want := subscription.SeatUsage{AsOf: subscription.MustDate(usageAsOf), Users: c.users, Unused30: c.u30, Unused60: c.u60, Unused90: c.u90}
			if e.Usage == nil || *e.Usage != want {
				t.Errorf("call list seat usage of %s: %+v, want %+v", sub.id, e.Usage, want)
			}
			if want := fmt.Sprintf("expires in %d days; %s", sub.daysLeft, c.line(sub.seats)); e.Reason != want {
				t.Errorf("call list reason of %s: %q, want %q", sub.id, e.Reason, want)
			}
		}
		if e := after[usageSubs[1].id]; !strings.HasSuffix(e.Reason, fmt.Sprintf("; %d of 3000 seats unused for 60+ days", ex.counts[usageSubs[1].id].u60)) {
			t.Errorf("call list reason of Inventor does not give its 60-day count: %q", e.Reason)
		}

		// The notices: one email each, with the unused-seat line.
		cli(0, "run", "--as-of", usageAsOf, "--wait")
		sent := b.sent(t)
		if len(sent) != len(usageSubs) {
			t.Fatalf("%d emails sent, want %d", len(sent), len(usageSubs))
		}
		texts := map[string]string{}
		for _, m := range sent {
			leaks.check("email to "+strings.Join(m.rcpts, ","), m.raw)
			h, text, html := emailParts(t, m.raw)
			texts[h.Get("X-Renewal-Notice")] = text + "\x00" + html
		}
		for _, sub := range usageSubs {
			key := fmt.Sprintf("%s:%s:%d", sub.id, sub.end, sub.milestone)
			text, html, _ := strings.Cut(texts[key], "\x00")
			line := ex.counts[sub.id].line(sub.seats)
			if want := line + ", as the vendor's usage report of 14 February 2027 shows"; !strings.Contains(text, want) {
				t.Errorf("notice %s lacks %q:\n%s", key, want, text)
			}
			if !strings.Contains(html, "<strong>"+line+"</strong>") {
				t.Errorf("notice %s: the HTML part lacks %q", key, line)
			}
		}

		// Every subscription as the store decodes it, sealed part opened.
		var store subscription.Store
		if b.redis != nil {
			st, _, err := redisstore.Open(ctx, b.redis.URL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			store = st
		} else {
			st, _, err := kvstore.New(ctx, usageJS(t, b.nats))
			if err != nil {
				t.Fatal(err)
			}
			store = st
		}
		var decoded []byte
		n := 0
		err := store.EndingBetween(ctx, subscription.MustDate("2017-01-01"), subscription.MustDate("2037-01-01"), func(sub subscription.Subscription) error {
			j, err := json.Marshal(sub)
			if err != nil {
				return err
			}
			n++
			decoded = append(decoded, j...)
			leaks.check("subscription "+sub.ID+" as the store decodes it", j)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != len(usageSubs) {
			t.Errorf("the store holds %d subscriptions, want %d", n, len(usageSubs))
		}
		for _, sub := range usageSubs {
			got, err := store.Get(ctx, sub.id)
			if err != nil {
				t.Fatal(err)
			}
			if c := ex.counts[sub.id]; got.Usage == nil || got.Usage.Users != c.users || got.Usage.Unused30 != c.u30 ||
				got.Usage.Unused60 != c.u60 || got.Usage.Unused90 != c.u90 {
				t.Errorf("stored seat usage of %s: %+v, want %+v", sub.id, got.Usage, c)
			}
			// The search sees the sealed part: the contract manager is in it.
			if !bytes.Contains(decoded, []byte(sub.cmEmail)) {
				t.Errorf("the decoded subscriptions lack %s's contract manager: the sealed part was not read", sub.id)
			}
		}
		if _, err := store.Get(ctx, usageUnknown); !errors.Is(err, subscription.ErrNotFound) {
			t.Errorf("the unmatched rows' subscription %s: %v, want not found", usageUnknown, err)
		}

		// Every stored byte. Each read must see the stored counts where the
		// subscriptions are kept (an empty read would prove nothing): on the
		// embedded store in the bucket's stream and its block files, on
		// Redis in its keys and its append-only file.
		streams := usageStreams(t, usageJS(t, b.nats), leaks)
		files := usageFiles(t, s.DataDir, leaks)
		reads := map[string]usageRead{"the streams": streams, "the data dir's files": files}
		if b.redis != nil {
			dir, err := rc.ConfigGet(ctx, "dir").Result()
			if err != nil {
				t.Fatal(err)
			}
			reads = map[string]usageRead{"the redis keys": usageRedis(t, rc, leaks), "redis's files": usageFiles(t, dir["dir"], leaks)}
		}
		for what, r := range reads {
			if r.n == 0 || !r.counts {
				t.Errorf("%s: read %d, the stored counts seen: %v", what, r.n, r.counts)
			}
		}
		if streams.n == 0 || files.n == 0 {
			t.Errorf("read %d stream messages and %d files of the data dir, want some of each", streams.n, files.n)
		}

		leaks.check("the server's log", []byte(s.Logs()))
		leaks.check("the CLI's output", []byte(strings.Join(out, "\n")))
		t.Logf("%s: %v", b.name, time.Since(start).Round(time.Millisecond))
	})
}

// usageCallList returns the call list as of usageAsOf, by subscription.
func usageCallList(t *testing.T, cli func(int, ...string) string) map[string]calllist.Entry {
	t.Helper()
	var list struct {
		Entries []calllist.Entry `json:"entries"`
	}
	out := cli(0, "calllist", "--format", "json", "--as-of", usageAsOf)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("calllist: %v\n%s", err, out)
	}
	by := map[string]calllist.Entry{}
	for _, e := range list.Entries {
		by[e.SubscriptionID] = e
	}
	return by
}

// identityCheck fails the test for each place that holds a user's identity.
type identityCheck struct{ t *testing.T }

func (c *identityCheck) check(where string, data []byte) {
	c.t.Helper()
	low := bytes.ToLower(data)
	for _, m := range usageMarks {
		if i := bytes.Index(low, m); i >= 0 {
			c.t.Errorf("%s holds a user's identity: ...%q...", where, data[max(i-40, 0):min(i+60, len(data))])
			return
		}
	}
}

// usageRead is what one read saw: how many messages, keys or files, and
// whether the stored counts were in them.
type usageRead struct {
	n      int
	counts bool
}

// usageCountsIn reports whether data holds the seat-usage counts as they
// are stored: the marker that a read reached the subscriptions.
func usageCountsIn(data []byte) bool { return bytes.Contains(data, []byte(`"unused_90"`)) }

// usageJS is a JetStream handle on the server's NATS as the service user.
func usageJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// usageStreams reads every message of every stream by sequence, subject,
// header and data.
func usageStreams(t *testing.T, js jetstream.JetStream, c *identityCheck) usageRead {
	t.Helper()
	ctx := context.Background()
	names := js.StreamNames(ctx)
	var all []string
	for name := range names.Name() {
		all = append(all, name)
	}
	if err := names.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	counts, msgs := false, 0
	for _, name := range all {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		// None of the server's streams is compressed today, so the file
		// scan reads their messages as they were written. A compressed
		// (S2) stream's block files would hide any name from it, and the
		// file scan alone would prove nothing: its messages are searched
		// here, as the stream returns them, whatever it stores. (The file
		// scan must also find the stored counts, so a compressed
		// subscriptions bucket fails the test rather than pass unread.)
		if info.Config.Compression != jetstream.NoCompression {
			t.Logf("stream %s is compressed (%v): its block files are not searchable, its messages are", name, info.Config.Compression)
		}
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // deleted, or replaced in a bucket
			}
			if err != nil {
				t.Fatalf("stream %s message %d: %v", name, seq, err)
			}
			msgs++
			var h strings.Builder
			for _, k := range slices.Sorted(func(yield func(string) bool) {
				for k := range m.Header {
					if !yield(k) {
						return
					}
				}
			}) {
				fmt.Fprintf(&h, "%s: %s\n", k, strings.Join(m.Header.Values(k), ", "))
			}
			data := append([]byte(m.Subject+"\n"+h.String()+"\n"), m.Data...)
			c.check(fmt.Sprintf("stream %s message %d (%s)", name, seq, m.Subject), data)
			counts = counts || usageCountsIn(data)
		}
	}
	t.Logf("read %d messages of %d streams %v", msgs, len(all), all)
	return usageRead{msgs, counts}
}

// usageRedis reads every key, and its value by type (not DUMP, which may
// compress).
func usageRedis(t *testing.T, rc *redis.Client, c *identityCheck) usageRead {
	t.Helper()
	ctx := context.Background()
	counts, keys := false, 0
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		var v any
		var err error
		switch typ, terr := rc.Type(ctx, k).Result(); {
		case terr != nil:
			t.Fatalf("redis TYPE %s: %v", k, terr)
		case typ == "string":
			v, err = rc.Get(ctx, k).Result()
		case typ == "hash":
			v, err = rc.HGetAll(ctx, k).Result()
		case typ == "zset":
			v, err = rc.ZRangeWithScores(ctx, k, 0, -1).Result()
		case typ == "set":
			v, err = rc.SMembers(ctx, k).Result()
		case typ == "list":
			v, err = rc.LRange(ctx, k, 0, -1).Result()
		case typ == "stream":
			v, err = rc.XRange(ctx, k, "-", "+").Result()
		case typ == "none":
			continue // expired or deleted since SCAN
		default:
			t.Fatalf("redis key %s is a %s, which the test cannot read", k, typ)
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("redis read %s: %v", k, err)
		}
		keys++
		data := []byte(k + "\n" + fmt.Sprint(v))
		c.check("redis key "+k, data)
		counts = counts || usageCountsIn(data)
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("redis SCAN: %v", err)
	}
	t.Logf("read %d redis keys", keys)
	return usageRead{keys, counts}
}

// usageFiles reads every file under dir.
func usageFiles(t *testing.T, dir string, c *identityCheck) usageRead {
	t.Helper()
	counts, files, size := false, 0, 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking (an AOF file Redis replaced)
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		files, size = files+1, size+len(data)
		c.check("file "+p, data)
		counts = counts || usageCountsIn(data)
		return nil
	})
	if err != nil {
		t.Fatalf("read the files under %s: %v", dir, err)
	}
	t.Logf("read %d files, %d bytes, under %s", files, size, dir)
	return usageRead{files, counts}
}
