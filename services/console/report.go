package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/subscription"
	"renewals/services/report"
)

// reportData is the renewals report page: how the terms ending in a range
// of months went (GET /api/v1/report/renewals, as a table).
type reportData struct {
	From, To string // YYYY-MM
	Report   *report.Report
	Rows     []reportRow
	CSV      string
	Message  string
	At       time.Time // when the report was worked out
}

func (d reportData) flash() (string, string) { return "", d.Message }

type reportRow struct {
	report.Month
	Rate, Late, LostWhy, CallsBy string
	Total                        bool
}

// months reads a month as YYYY-MM, its first day or, when end, its last.
func month(v string, end bool) (subscription.Date, error) {
	t, err := time.Parse("2006-01", v)
	if err != nil {
		return subscription.Date{}, fmt.Errorf("%q is not a month: use YYYY-MM, e.g. 2026-12", v)
	}
	if end {
		t = t.AddDate(0, 1, -1)
	}
	return subscription.DateOf(t), nil
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k, n := range m {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = strings.ReplaceAll(k, "_", " ") + " " + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ", ")
}

// reportRange is the range the query asks for: by default the three months
// before this one and this one.
func (c *Console) reportRange(r *http.Request) (from, to subscription.Date, fromS, toS, msg string) {
	today := c.today()
	first := subscription.Date{Year: today.Year, Month: today.Month, Day: 1}
	start := subscription.DateOf(time.Date(first.Year, first.Month-3, 1, 0, 0, 0, 0, time.UTC))
	fromS, toS = r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if fromS == "" {
		fromS = start.String()[:7]
	}
	if toS == "" {
		toS = first.String()[:7]
	}
	from, err1 := month(fromS, false)
	to, err2 := month(toS, true)
	if err := errors.Join(err1, err2); err != nil {
		return from, to, fromS, toS, "From and to: " + strings.ReplaceAll(err.Error(), "\n", "; ") + "."
	}
	return from, to, fromS, toS, ""
}

func (c *Console) reportPage(w http.ResponseWriter, r *http.Request, ss *session) {
	from, to, fromS, toS, msg := c.reportRange(r)
	d := reportData{From: fromS, To: toS, Message: msg}
	if msg != "" {
		c.render(w, r, ss, http.StatusBadRequest, "report", "Report", d)
		return
	}
	rep, at, err := c.reports.get(r.Context(), c, from, to)
	d.At = at
	if errors.Is(err, report.ErrRange) {
		d.Message = strings.TrimPrefix(err.Error(), report.ErrRange.Error()+": ")
		c.render(w, r, ss, http.StatusBadRequest, "report", "Report", d)
		return
	}
	if err != nil {
		c.Log.Error("console report", zap.Error(err))
		c.fail(w, r, ss, http.StatusServiceUnavailable, "The report cannot be read now: try again in a minute.")
		return
	}
	d.Report = &rep
	for i, m := range append(rep.Months, rep.Total) {
		row := reportRow{Month: m, Rate: "—", Late: counts(m.RenewedAfterEnd), LostWhy: counts(m.LostReasons), CallsBy: counts(m.CallsByOutcome), Total: i == len(rep.Months)}
		if m.RenewalRate != nil {
			row.Rate = strconv.FormatFloat(*m.RenewalRate*100, 'f', 0, 64) + "%"
		}
		if row.Total {
			row.Month.Month = "All"
		}
		d.Rows = append(d.Rows, row)
	}
	d.CSV = "/report.csv?" + url.Values{"from": {fromS}, "to": {toS}}.Encode()
	c.render(w, r, ss, http.StatusOK, "report", "Report", d)
}

func (c *Console) reportCSV(w http.ResponseWriter, r *http.Request, ss *session) {
	from, to, _, _, msg := c.reportRange(r)
	if msg != "" {
		c.fail(w, r, ss, http.StatusBadRequest, msg)
		return
	}
	rep, _, err := c.reports.get(r.Context(), c, from, to)
	if err != nil {
		c.fail(w, r, ss, http.StatusBadRequest, "The report cannot be read: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="renewals-report.csv"`)
	_ = report.WriteCSV(w, rep, c.Report.PostExpiry)
}

// The report reads every term of its months with their notices, calls and
// renewals (seconds with 100,000 subscriptions): the console keeps the
// reports shown lately, counts without personal data, and works one out
// again on the next view once it is older than reportStale after a change,
// or older than snapshotTTL.
const (
	reportStale = time.Minute
	reportsMax  = 8
)

type reportKey struct{ day, from, to subscription.Date }

type reportCache struct {
	mu sync.Mutex
	m  map[reportKey]reportEntry
}

type reportEntry struct {
	rep report.Report
	at  time.Time
}

func (rc *reportCache) get(ctx context.Context, c *Console, from, to subscription.Date) (report.Report, time.Time, error) {
	now := c.Now()
	k := reportKey{c.today(), from, to}
	rc.mu.Lock()
	e, ok := rc.m[k]
	rc.mu.Unlock()
	c.snaps.mu.Lock()
	changed := c.snaps.changed
	c.snaps.mu.Unlock()
	if ok && now.Sub(e.at) < snapshotTTL && (changed.Before(e.at) || now.Sub(e.at) < reportStale) {
		return e.rep, e.at, nil
	}
	rep, err := c.Report.Build(ctx, from, to, subscription.Date{})
	if err != nil {
		return rep, now, err
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.m == nil || len(rc.m) >= reportsMax {
		rc.m = map[reportKey]reportEntry{}
	}
	rc.m[k] = reportEntry{rep, now}
	return rep, now, nil
}
