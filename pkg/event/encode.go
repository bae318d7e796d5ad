package event

import (
	"strconv"
	"unicode/utf8"

	"renewals/pkg/subscription"
)

// appendOutcome appends json.Marshal(o), byte for byte, without
// reflection: the notifier encodes one per notice. encode_test.go holds the
// two to that.
func appendOutcome(b []byte, o *NoticeOutcome) []byte {
	b = append(b, `{"notice_key":`...)
	b = appendKey(b, o.NoticeKey)
	b = append(b, `,"subscription_id":`...)
	b = appendString(b, o.SubscriptionID)
	b = append(b, `,"end_date":`...)
	b = appendDate(b, o.EndDate)
	b = append(b, `,"milestone":`...)
	b = strconv.AppendInt(b, int64(o.Milestone), 10)
	b = append(b, `,"outcome":`...)
	b = appendString(b, string(o.Outcome))
	if o.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, o.Reason)
	}
	if o.Role != "" {
		b = append(b, `,"role":`...)
		b = appendString(b, string(o.Role))
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
func appendKey(b []byte, k subscription.NoticeKey) []byte {
	if !plainDate(k.EndDate) {
		return appendString(b, k.String())
	}
	b = appendString(b, k.SubscriptionID)
	b = append(b[:len(b)-1], ':')
	b = appendDateText(b, k.EndDate)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(k.Milestone), 10)
	return append(b, '"')
}

// appendDate appends the JSON string of d.MarshalText.
func appendDate(b []byte, d subscription.Date) []byte {
	if !plainDate(d) {
		return appendString(b, d.String())
	}
	b = append(b, '"')
	b = appendDateText(b, d)
	return append(b, '"')
}

// plainDate reports whether d.String is "" or YYYY-MM-DD with no more
// digits than that.
func plainDate(d subscription.Date) bool {
	return d.Year >= 0 && d.Year <= 9999 && d.Month >= 0 && d.Month <= 99 && d.Day >= 0 && d.Day <= 99
}

// appendDateText appends d.String() of a plain date.
func appendDateText(b []byte, d subscription.Date) []byte {
	if d.IsZero() {
		return b
	}
	y, m, dd := d.Year, int(d.Month), d.Day
	return append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10),
		'-', byte('0'+m/10), byte('0'+m%10), '-', byte('0'+dd/10), byte('0'+dd%10))
}

const hexDigits = "0123456789abcdef"

// appendString appends s as encoding/json writes a string, with its HTML
// escaping: <, > and & as \u003c and so on, U+2028 and U+2029 escaped, and
// each byte of invalid UTF-8 as \ufffd. (pkg/shred has the same.)
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
