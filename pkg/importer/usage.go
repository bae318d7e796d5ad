package importer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"renewals/pkg/subscription"
)

// The vendor's seat-usage export (Autodesk's Usage report: one row per user
// and product, naming the subscription or the contract, with the day the
// user last used it or the days since) becomes, per subscription, counts of
// the seats unused for 30, 60 and 90 days. The users' names, addresses and
// ids in the export are never read into a field: only the counts are kept.

// usageFields are the columns a usage export is read for.
var usageFields = [...]string{"subscription_id", "contract_number", "product", "last_used", "days_inactive"}

// usageAliases maps the header keys of the vendor's usage columns to ours.
var usageAliases = map[string]string{
	"contractnumber":   "contract_number",
	"contract":         "contract_number",
	"offeringname":     "product",
	"productname":      "product",
	"lastaccessed":     "last_used",
	"lastuseddate":     "last_used",
	"lastusagedate":    "last_used",
	"lastlogin":        "last_used",
	"lastactivity":     "last_used",
	"daysinactive":     "days_inactive",
	"dayssincelastuse": "days_inactive",
	"inactivedays":     "days_inactive",
	// The columns that name a user are read into no field ("-"), and not
	// reported as unknown either, since they are expected.
	"email": "-", "emailaddress": "-", "useremail": "-", "firstname": "-", "lastname": "-",
	"name": "-", "username": "-", "user": "-", "autodeskid": "-", "hashedautodeskid": "-", "userid": "-",
}

var usageLayout = layout{keysOf(usageFields[:]), usageAliases}

func usageColumns(seen map[string]bool) error {
	switch {
	case !seen["subscription_id"] && !seen["contract_number"]:
		return &FileError{Reason: "missing column subscription_id (or contract_number with product): the usage export must say whose seat each row is; rename the columns in the file, or give a column map: renewals import-usage --map FILE"}
	case !seen["last_used"] && !seen["days_inactive"]:
		return &FileError{Reason: "missing column last_used (or days_inactive): the usage export must say when each user last used the product; rename the columns in the file, or give a column map: renewals import-usage --map FILE"}
	}
	return nil
}

// UsageStore is what ImportUsage needs of subscription.Store.
type UsageStore interface {
	Upserter
	Get(ctx context.Context, id string) (subscription.Subscription, error)
	EndingBetween(ctx context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error
}

// UsageOptions configure ImportUsage. Store and AsOf are required. The
// Options mean what they mean for Import (Format is FormatAuto, FormatCSV or
// FormatXLSX, Map comes from ParseUsageMap, OnUpsert is called for each
// subscription whose counts were written), except Options.Store: Store is
// used instead.
type UsageOptions struct {
	Options
	// Store is where the subscriptions are found and their counts written.
	Store UsageStore
	// AsOf is the day the export was taken: days inactive are reckoned to it.
	AsOf subscription.Date
}

// UsageReport is the outcome of a usage import. It names no user.
type UsageReport struct {
	// AsOf is the day the counts are reckoned for.
	AsOf subscription.Date `json:"as_of"`
	// Rows is the number of user rows read; Counted of them were counted
	// into a subscription, Rejected could not be read, and the rest named a
	// subscription or contract that is not stored (Unmatched).
	Rows     int `json:"rows"`
	Counted  int `json:"counted"`
	Rejected int `json:"rejected"`
	// Rejections say why, by line and field (never quoting a value).
	Rejections        []Rejection `json:"rejections"`
	RejectionsOmitted int         `json:"rejections_omitted"`
	// Subscriptions is how many subscriptions got counts: Updated of them
	// changed, Unchanged had the same counts already.
	Subscriptions int `json:"subscriptions"`
	Updated       int `json:"updated"`
	Unchanged     int `json:"unchanged"`
	// Unmatched lists what rows named that no stored subscription is: a
	// subscription id, or "contract C, product P", with why.
	Unmatched        []string `json:"unmatched"`
	UnmatchedOmitted int      `json:"unmatched_omitted"`
	UnknownColumns   []string `json:"unknown_columns"`
	Encoding         string   `json:"encoding,omitempty"`
	Sheet            string   `json:"sheet,omitempty"`
}

// Text is the report as a person reads it.
func (r UsageReport) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d user %s: %d counted, %d rejected, %d unmatched; seat usage as of %s stored for %d %s (%d updated, %d unchanged)\n",
		r.Rows, subscription.Plural(r.Rows, "row", "rows"), r.Counted, r.Rejected, r.Rows-r.Counted-r.Rejected, r.AsOf,
		r.Subscriptions, subscription.Plural(r.Subscriptions, "subscription", "subscriptions"), r.Updated, r.Unchanged)
	writeRejections(&b, r.Rejections, r.RejectionsOmitted)
	for _, u := range r.Unmatched {
		fmt.Fprintf(&b, "not counted: %s\n", u)
	}
	if r.UnmatchedOmitted > 0 {
		fmt.Fprintf(&b, "... and %d more not counted\n", r.UnmatchedOmitted)
	}
	writeUnknown(&b, r.UnknownColumns)
	writeSource(&b, r.Sheet, r.Encoding)
	return b.String()
}

// usageKey is whose seat a row is: a subscription id, or a contract and
// product (lower case).
type usageKey struct {
	id, contract, product string
}

func (k usageKey) String() string {
	if k.id != "" {
		return "subscription " + k.id
	}
	if k.product == "" {
		return "contract " + k.contract
	}
	return fmt.Sprintf("contract %s, product %s", k.contract, k.product)
}

// tally is the counts of one key.
type tally struct {
	rows  int
	users int
	idle  [len(subscription.UsageThresholds)]int
	// held are the last-used dates that could be read day first or
	// month first, until the file tells which.
	held []string
}

func (t *tally) add(inactive int) {
	t.users++
	for i, d := range subscription.UsageThresholds {
		if inactive >= d {
			t.idle[i]++
		}
	}
}

// never is the days inactive of a user who never used the product.
const never = 1 << 30

// ImportUsage reads a usage export and stores, for each subscription it
// names, the counts of users inactive for 30, 60 and 90 days as of
// opts.AsOf (a user with no last-used day counts as never having used it).
// Rows name a subscription by subscription_id, or by contract_number and
// product (matched without case against the stored subscriptions of the
// contract). Subscriptions the export does not name keep their counts.
//
// An error means the file could not be read (a *FileError, e.g. its dates
// could be day first or month first and no row tells which: nothing is then
// stored) or the store failed.
func ImportUsage(ctx context.Context, r io.Reader, opts UsageOptions) (UsageReport, error) {
	rep := UsageReport{AsOf: opts.AsOf, Rejections: []Rejection{}, Unmatched: []string{}, UnknownColumns: []string{}}
	if opts.Store == nil || opts.AsOf.IsZero() {
		return rep, errors.New("import usage: a store and the day of the export are required")
	}
	opts.Options = opts.withDefaults()
	rd, err := opts.open(r, true)
	if err != nil {
		return rep, err
	}
	defer rd.Close()
	reject := func(line int, field, reason string) {
		rep.Rejected++
		list(&rep.Rejections, &rep.RejectionsOmitted, opts.MaxListed, Rejection{Line: line, Field: field, Reason: reason})
	}
	tallies := map[usageKey]*tally{}
	dates := dateOrder{format: opts.DateFormat}
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, err
		}
		rep.Rows++
		if err := opts.progress(ctx, rep.Rows); err != nil {
			return rep, fmt.Errorf("import usage: %w", err)
		}
		f := rec.Fields
		var k usageKey
		if id := strings.TrimSpace(f["subscription_id"]); id != "" {
			if subscription.ValidID(id) != nil {
				reject(rec.Line, "subscription_id", "is not a subscription id: use 1 to 64 letters, digits, '-' or '_'")
				continue
			}
			k.id = id
		} else if c := strings.TrimSpace(f["contract_number"]); c != "" && len(c) <= MaxFieldChars {
			k.contract, k.product = c, strings.ToLower(strings.TrimSpace(f["product"]))
		} else {
			reject(rec.Line, "subscription_id", "is missing: each row needs the subscription id, or the contract number and product")
			continue
		}
		last := strings.TrimSpace(f["last_used"])
		if len(last) > 10 && last[4] == '-' && (last[10] == ' ' || last[10] == 'T') {
			last = last[:10] // a time of day after an ISO date
		}
		inactive, held := never, false
		switch d := strings.TrimSpace(f["days_inactive"]); {
		case d != "":
			n, err := strconv.Atoi(d)
			if err != nil || n < 0 {
				reject(rec.Line, "days_inactive", "is not a number of days: use a whole number of 0 or more")
				continue
			}
			inactive = n
		case last == "" || strings.EqualFold(last, "never"):
		case dates.see(last):
			held = true
		default:
			day, ok := parseDate(last, dates.format)
			if !ok {
				reject(rec.Line, "last_used", "is not a date: use YYYY-MM-DD, e.g. 2027-05-31")
				continue
			}
			inactive = max(day.DaysUntil(opts.AsOf), 0)
		}
		// Only a row that counts makes a tally: a subscription whose rows
		// were all rejected keeps the counts it had.
		t := tallies[k]
		if t == nil {
			t = &tally{}
			tallies[k] = t
		}
		t.rows++
		if held {
			t.held = append(t.held, last)
		} else {
			t.add(inactive)
		}
	}
	rep.UnknownColumns, rep.Encoding, rep.Sheet = rd.UnknownColumns(), rd.Encoding(), rd.Sheet()
	opts.progressEnd(rep.Rows)
	for _, t := range tallies {
		if len(t.held) == 0 {
			continue
		}
		if dates.format == DateAuto {
			return rep, dates.undecided(0)
		}
		for _, s := range t.held {
			day, _ := parseDate(s, dates.format)
			t.add(max(day.DaysUntil(opts.AsOf), 0))
		}
		t.held = nil
	}
	return rep, storeUsage(ctx, opts, tallies, &rep)
}

// storeUsage finds the subscription of each key and writes its counts.
func storeUsage(ctx context.Context, opts UsageOptions, tallies map[usageKey]*tally, rep *UsageReport) error {
	keys := slices.SortedFunc(maps.Keys(tallies), func(a, b usageKey) int {
		return cmp.Or(strings.Compare(a.id, b.id), strings.Compare(a.contract, b.contract), strings.Compare(a.product, b.product))
	})
	unmatched := func(k usageKey, why string) {
		list(&rep.Unmatched, &rep.UnmatchedOmitted, opts.MaxListed, k.String()+": "+why)
	}
	// The contracts' subscriptions, read once through the end-date index
	// when some rows name a contract rather than a subscription.
	byContract := map[string][]subscription.Subscription{}
	if slices.ContainsFunc(keys, func(k usageKey) bool { return k.id == "" }) {
		err := opts.Store.EndingBetween(ctx, opts.AsOf.AddDays(-10*366), opts.AsOf.AddDays(10*366), func(s subscription.Subscription) error {
			if s.ContractNumber != "" {
				byContract[s.ContractNumber] = append(byContract[s.ContractNumber], s)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("import usage: read the contracts' subscriptions: %w", err)
		}
	}
	// The subscriptions counted, in the order of their first key, and
	// their totals.
	var subs []subscription.Subscription
	totals := map[string]*tally{}
	count := func(s subscription.Subscription, t *tally) {
		sum := totals[s.ID]
		if sum == nil {
			sum = &tally{}
			totals[s.ID] = sum
			subs = append(subs, s)
		}
		sum.users += t.users
		for i := range sum.idle {
			sum.idle[i] += t.idle[i]
		}
		rep.Counted += t.rows
	}
	for _, k := range keys {
		t := tallies[k]
		if k.id != "" {
			s, err := opts.Store.Get(ctx, k.id)
			if errors.Is(err, subscription.ErrNotFound) {
				unmatched(k, "no such subscription is stored")
				continue
			}
			if err != nil {
				return fmt.Errorf("import usage: %w", err)
			}
			count(s, t)
			continue
		}
		var match []subscription.Subscription
		for _, s := range byContract[k.contract] {
			if k.product == "" || strings.EqualFold(strings.TrimSpace(s.Product), k.product) {
				match = append(match, s)
			}
		}
		switch {
		case len(match) == 1:
			count(match[0], t)
		case len(match) == 0:
			unmatched(k, "no stored subscription of the contract has that product")
		default:
			unmatched(k, fmt.Sprintf("%d subscriptions of the contract match: give the subscription_id", len(match)))
		}
	}
	for i, s := range subs {
		t := totals[s.ID]
		subs[i].Usage = &subscription.SeatUsage{AsOf: opts.AsOf, Users: t.users, Unused30: t.idle[0], Unused60: t.idle[1], Unused90: t.idle[2]}
	}
	for batch := range slices.Chunk(subs, opts.BatchSize) {
		res, err := opts.Store.Upsert(ctx, batch)
		if err != nil {
			return fmt.Errorf("import usage: store the counts of %d subscriptions: %w", len(batch), err)
		}
		for i, r := range res {
			rep.Subscriptions++
			if r.Change == subscription.Unchanged {
				rep.Unchanged++
			} else {
				rep.Updated++
			}
			if opts.OnUpsert != nil {
				opts.OnUpsert(batch[i], r)
			}
		}
	}
	return nil
}
