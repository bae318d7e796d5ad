package event

import (
	"encoding/json"
	"strconv"
	"time"

	"renewals/pkg/jsonenc"
	"renewals/pkg/subscription"
)

// appendOutcome appends json.Marshal(o), byte for byte, without
// reflection: the notifier encodes one per notice. encode_test.go holds the
// two to that.
func appendOutcome(b []byte, o *NoticeOutcome) []byte {
	b = append(b, `{"notice_key":`...)
	b = appendKey(b, o.NoticeKey)
	b = append(b, `,"subscription_id":`...)
	b = jsonenc.AppendString(b, o.SubscriptionID)
	b = append(b, `,"end_date":`...)
	b = appendDate(b, o.EndDate)
	b = append(b, `,"milestone":`...)
	b = strconv.AppendInt(b, int64(o.Milestone), 10)
	b = append(b, `,"outcome":`...)
	b = jsonenc.AppendString(b, string(o.Outcome))
	if o.Reason != "" {
		b = append(b, `,"reason":`...)
		b = jsonenc.AppendString(b, o.Reason)
	}
	if o.Role != "" {
		b = append(b, `,"role":`...)
		b = jsonenc.AppendString(b, string(o.Role))
	}
	if o.Attempts != 0 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(o.Attempts), 10)
	}
	if o.Ambiguous {
		b = append(b, `,"ambiguous":true`...)
	}
	return append(b, '}')
}

// appendKey appends the JSON string of k.MarshalText.
func appendKey(b []byte, k subscription.NoticeKey) []byte { return jsonenc.AppendString(b, k.String()) }

// appendDate appends the JSON string of d.MarshalText.
func appendDate(b []byte, d subscription.Date) []byte { return jsonenc.AppendString(b, d.String()) }

// Marshal returns json.Marshal(e), writing the envelope by hand when it can:
// when e.Time is within the years json.Marshal accepts and e.Data is already
// in the form json.Marshal would give it (compact, and with <, >, &, U+2028
// and U+2029 escaped inside strings), as New's data always is. Otherwise it
// calls json.Marshal.
func Marshal(e Event) ([]byte, error) {
	if y := e.Time.Year(); y < 0 || y > 9999 || e.Data != nil && !marshalled(e.Data) {
		return json.Marshal(e)
	}
	b := make([]byte, 0, 160+len(e.ID)+len(e.Type)+len(e.Subject)+len(e.Data))
	b = append(b, `{"specversion":`...)
	b = jsonenc.AppendString(b, e.SpecVersion)
	b = append(b, `,"id":`...)
	b = jsonenc.AppendString(b, e.ID)
	b = append(b, `,"source":`...)
	b = jsonenc.AppendString(b, e.Source)
	b = append(b, `,"type":`...)
	b = jsonenc.AppendString(b, e.Type)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","subject":`...)
	b = jsonenc.AppendString(b, e.Subject)
	b = append(b, `,"datacontenttype":`...)
	b = jsonenc.AppendString(b, e.DataContentType)
	b = append(b, `,"data":`...)
	if e.Data == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data...)
	}
	return append(b, '}'), nil
}

// marshalled reports whether raw is valid JSON that json.Marshal would copy
// unchanged into an enclosing value: no white space outside strings, and
// none of <, >, &, U+2028 or U+2029 unescaped (encoding/json escapes them).
func marshalled(raw []byte) bool {
	in := false // inside a string
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case in && c == '\\':
			i++ // the escaped byte cannot end the string
		case c == '"':
			in = !in
		case c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9):
			return false
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return json.Valid(raw)
}
