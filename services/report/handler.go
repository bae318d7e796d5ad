package report

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/page"
	"renewals/pkg/subscription"
)

// Handler serves GET /api/v1/report/renewals?from=&to=[&as_of=][&format=csv].
// from and to are days (YYYY-MM-DD) or months (YYYY-MM, the whole month);
// by default the three months before this one and this one.
type Handler struct {
	Builder *Builder
	Log     *zap.Logger
}

// ServeHTTP answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	loc := h.Builder.Location
	if loc == nil {
		loc = time.UTC
	}
	today := subscription.Today(h.Builder.Now(), loc)
	from, to := monthStart(today), nextMonth(monthStart(today)).AddDays(-1)
	for i := 0; i < 3; i++ {
		from = monthStart(from.AddDays(-1))
	}
	var asOf subscription.Date
	for _, p := range []struct {
		name string
		dst  *subscription.Date
		end  bool
	}{{"from", &from, false}, {"to", &to, true}, {"as_of", &asOf, false}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		d, err := parseDay(v, p.end)
		if err != nil || (p.name == "as_of" && len(v) != 10) {
			page.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%s %q: give a day as YYYY-MM-DD or, for from and to, a month as YYYY-MM", p.name, v), "code": "invalid"})
			return
		}
		*p.dst = d
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		page.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("format %q: use json or csv", format), "code": "invalid"})
		return
	}
	rep, err := h.Builder.Build(r.Context(), from, to, asOf)
	if err != nil {
		if errors.Is(err, ErrRange) {
			page.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": strings.TrimPrefix(err.Error(), ErrRange.Error()+": "), "code": "invalid"})
			return
		}
		h.Log.Error("renewals report", zap.Error(err))
		page.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the report cannot be read now: " + err.Error(), "code": "unavailable"})
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="renewals-report.csv"`)
		_ = WriteCSV(w, rep, h.Builder.PostExpiry)
		return
	}
	page.WriteJSON(w, http.StatusOK, rep)
}

// parseDay reads YYYY-MM-DD, or YYYY-MM as its first day (its last when
// end).
func parseDay(v string, end bool) (subscription.Date, error) {
	if len(v) == 7 {
		d, err := subscription.ParseDate(v + "-01")
		if err != nil || !end {
			return d, err
		}
		return nextMonth(d).AddDays(-1), nil
	}
	return subscription.ParseDate(v)
}

// WriteCSV writes the report's months and its total as CSV: one column per
// post-expiry stage for the late renewals, and the lost reasons and call
// outcomes as "reason count" lists.
func WriteCSV(w http.ResponseWriter, r Report, pe subscription.PostExpiry) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	stages := make([]string, 0, len(pe)+1)
	for _, s := range pe {
		stages = append(stages, s.Name)
	}
	stages = append(stages, subscription.StageCancelled)
	head := []string{"month", "came_up", "renewed_before_end", "renewed_late"}
	for _, s := range stages {
		head = append(head, "renewed_"+s)
	}
	head = append(head, "renewed", "lost", "lost_reasons", "open", "renewal_rate", "notices_sent", "calls", "calls_by_outcome")
	if err := cw.Write(head); err != nil {
		return err
	}
	list := func(m map[string]int) string {
		var parts []string
		for _, k := range sortedKeys(m) {
			parts = append(parts, k+" "+strconv.Itoa(m[k]))
		}
		return strings.Join(parts, "; ")
	}
	for _, m := range append(r.Months, r.Total) {
		row := []string{m.Month, strconv.Itoa(m.CameUp), strconv.Itoa(m.RenewedBeforeEnd), strconv.Itoa(m.RenewedLate)}
		for _, s := range stages {
			row = append(row, strconv.Itoa(m.RenewedAfterEnd[s]))
		}
		rate := ""
		if m.RenewalRate != nil {
			rate = strconv.FormatFloat(*m.RenewalRate, 'f', 3, 64)
		}
		row = append(row, strconv.Itoa(m.Renewed), strconv.Itoa(m.Lost), list(m.LostReasons), strconv.Itoa(m.Open), rate,
			strconv.Itoa(m.NoticesSent), strconv.Itoa(m.Calls), list(m.CallsByOutcome))
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
