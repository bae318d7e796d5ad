package event

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"renewals/pkg/subscription"
)

// Decode reads events by hand when they have the shape that json.Marshal
// gives an Event (and the scheduler's appendDueEvent writes): its members in
// declaration order, no whitespace, strings of printable ASCII without
// escapes, data last. For a *NoticeDue the data is read by hand too, when
// it has the shape json.Marshal gives it. The readers decline anything else,
// and Decode then decodes with encoding/json as it always did, so results
// and errors stay what they were; decode_test.go holds the two to that.

// cursor reads b from i.
type cursor struct {
	s string // the input, as one string that read strings share
	i int
}

// lit consumes p, reporting whether it is next.
func (c *cursor) lit(p string) bool {
	if strings.HasPrefix(c.s[c.i:], p) {
		c.i += len(p)
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (c *cursor) str() (string, bool) {
	s := c.s
	if c.i >= len(s) || s[c.i] != '"' {
		return "", false
	}
	start := c.i + 1
	for i := start; i < len(s); i++ {
		switch b := s[i]; {
		case b == '"':
			c.i = i + 1
			return s[start:i], true
		case b < 0x20 || b == '\\' || b >= 0x80:
			return "", false
		}
	}
	return "", false
}

// int reads an integer without fraction or exponent that fits an int.
func (c *cursor) int() (int, bool) {
	s, i := c.s, c.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	switch {
	case i == start, s[start] == '0' && i > start+1:
		return 0, false
	case i < len(s) && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'):
		return 0, false
	}
	v, err := strconv.ParseInt(s[c.i:i], 10, strconv.IntSize)
	if err != nil {
		return 0, false
	}
	c.i = i
	return int(v), true
}

// decodeFast reads b's envelope into e and, when due is non-nil, its data
// into *dueOut, reporting in dueOK whether it did. It reports false when b
// is not in the shape it reads.
func decodeFast(b []byte, e *Event, due bool, dueOut *NoticeDue) (ok, dueOK bool) {
	c := cursor{s: string(b)}
	if !c.lit(`{"specversion":`) || !c.strInto(&e.SpecVersion, `,"id":`) || !c.strInto(&e.ID, `,"source":`) ||
		!c.strInto(&e.Source, `,"type":`) || !c.strInto(&e.Type, `,"time":`) {
		return false, false
	}
	// What json.Unmarshal does with the time: hand its quoted text to
	// time.Time.UnmarshalJSON.
	t := c.i
	if _, ok := c.str(); !ok || e.Time.UnmarshalJSON(b[t:c.i]) != nil {
		return false, false
	}
	if !c.lit(`,"subject":`) || !c.strInto(&e.Subject, `,"datacontenttype":`) || !c.strInto(&e.DataContentType, `,"data":`) ||
		len(c.s) < c.i+2 || c.s[len(c.s)-1] != '}' {
		return false, false
	}
	data := b[c.i : len(b)-1]
	if due {
		d := cursor{s: c.s[:len(c.s)-1], i: c.i}
		dueOK = d.noticeDue(dueOut) && d.i == len(d.s)
	}
	if !dueOK && (isSpace(data[0]) || isSpace(data[len(data)-1]) || !json.Valid(data)) {
		return false, false
	}
	e.Data = bytes.Clone(data)
	return true, dueOK
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// strInto reads a string into v and then the literal next.
func (c *cursor) strInto(v *string, next string) bool {
	s, ok := c.str()
	if !ok || !c.lit(next) {
		return false
	}
	*v = s
	return true
}

// noticeDue reads the data of a due event as json.Marshal writes it.
func (c *cursor) noticeDue(d *NoticeDue) bool {
	var key, end, asOf string
	var ok bool
	switch {
	case !c.lit(`{"notice_key":`):
	case !c.strInto(&key, `,"subscription_id":`):
	case !c.strInto(&d.SubscriptionID, `,"end_date":`):
	case !c.strInto(&end, `,"milestone":`):
	default:
		ok = true
	}
	if !ok {
		return false
	}
	if d.Milestone, ok = c.int(); !ok || !c.lit(`,"days_left":`) {
		return false
	}
	if d.DaysLeft, ok = c.int(); !ok || !c.lit(`,"as_of":`) {
		return false
	}
	if asOf, ok = c.str(); !ok || !c.lit(`}`) {
		return false
	}
	if d.NoticeKey, ok = parseNoticeKey(key); !ok {
		return false
	}
	if d.EndDate, ok = parseDate(end); !ok {
		return false
	}
	d.AsOf, ok = parseDate(asOf)
	return ok
}

// parseNoticeKey is NoticeKey.UnmarshalText; it reports false where that
// fails.
func parseNoticeKey(s string) (subscription.NoticeKey, bool) {
	k, err := subscription.ParseNoticeKey(s)
	return k, err == nil
}

// parseDate is Date.UnmarshalText: "" is the zero Date, anything else
// subscription.ParseDate; it reports false where that fails.
func parseDate(v string) (subscription.Date, bool) {
	if v == "" {
		return subscription.Date{}, true
	}
	d, err := subscription.ParseDate(v)
	return d, err == nil
}
