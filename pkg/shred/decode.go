package shred

import (
	"strconv"
	"unicode/utf8"

	"renewals/pkg/subscription"
)

// The stored clear and personal parts are read by hand for the shapes that
// appendClear and appendPersonal write (see encode.go), without reflection.
// The readers here accept a strict subset of JSON: no whitespace, field
// names exactly as the encoders spell them and each at most once, strings
// without raw control characters, invalid UTF-8 or escaped surrogates,
// integers without fraction or exponent, no null. For such input they give
// exactly what json.Unmarshal gives into a zero value; anything else, such
// as a record written by json.Marshal with fields it no longer has, makes
// them report false, and the caller decodes the input with encoding/json,
// errors included. decode_test.go holds the two to that.

// jsonReader reads JSON values from s at i.
type jsonReader struct {
	s string
	i int
}

// byte consumes c, reporting whether it is next.
func (r *jsonReader) byte(c byte) bool {
	if r.i < len(r.s) && r.s[r.i] == c {
		r.i++
		return true
	}
	return false
}

// key reads an object member's name and its colon. Names are read as they
// stand: one with an escape is not one of ours.
func (r *jsonReader) key() (string, bool) {
	s := r.s
	if r.i >= len(s) || s[r.i] != '"' {
		return "", false
	}
	start := r.i + 1
	for i := start; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			if i+1 < len(s) && s[i+1] == ':' {
				r.i = i + 2
				return s[start:i], true
			}
			return "", false
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// str reads a string. Without escapes its value is a substring of r.s.
func (r *jsonReader) str() (string, bool) {
	s := r.s
	if r.i >= len(s) || s[r.i] != '"' {
		return "", false
	}
	start := r.i + 1
	for i := start; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			r.i = i + 1
			return s[start:i], true
		case c == '\\':
			return r.escaped(start, i)
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			i++
		default:
			rr, size := utf8.DecodeRuneInString(s[i:])
			if rr == utf8.RuneError && size == 1 {
				return "", false // encoding/json replaces each such byte; leave that to it
			}
			i += size
		}
	}
	return "", false
}

// escaped reads the rest of a string that starts at start and has its
// first backslash at i.
func (r *jsonReader) escaped(start, i int) (string, bool) {
	s := r.s
	b := make([]byte, 0, i-start+16)
	b = append(b, s[start:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			r.i = i + 1
			return string(b), true
		case c == '\\':
			if i+1 >= len(s) {
				return "", false
			}
			switch e := s[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				if i+6 > len(s) {
					return "", false
				}
				v, err := strconv.ParseUint(s[i+2:i+6], 16, 32)
				if err != nil || (v >= 0xD800 && v < 0xE000) {
					return "", false // surrogates are left to encoding/json
				}
				b = utf8.AppendRune(b, rune(v))
				i += 6
				continue
			default:
				return "", false
			}
			i += 2
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			rr, size := utf8.DecodeRuneInString(s[i:])
			if rr == utf8.RuneError && size == 1 {
				return "", false
			}
			b = append(b, s[i:i+size]...)
			i += size
		}
	}
	return "", false
}

// int reads an integer without fraction or exponent that fits an int.
func (r *jsonReader) int() (int, bool) {
	s, i := r.s, r.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	switch {
	case i == start, s[start] == '0' && i > start+1:
		return 0, false // no digits, or a leading zero
	case i < len(s) && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'):
		return 0, false // not an integer: encoding/json says why
	}
	v, err := strconv.ParseInt(s[r.i:i], 10, strconv.IntSize)
	if err != nil {
		return 0, false // out of range
	}
	r.i = i
	return int(v), true
}

// date reads a string that Date.UnmarshalText accepts: "" or a valid
// YYYY-MM-DD.
func (r *jsonReader) date() (subscription.Date, bool) {
	v, ok := r.str()
	if !ok {
		return subscription.Date{}, false
	}
	return parseDate(v)
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

// decodeClear reads b, the clear part as appendClear writes it, into s,
// which must be zero. When it reports false s may be partly written.
func decodeClear(b []byte, s *subscription.Subscription) bool {
	r := jsonReader{s: string(b)}
	var ints *[2]int
	return r.object(func(name string) (f uint32, ok bool) {
		switch name {
		case "subscription_id":
			f = 1 << 0
			s.ID, ok = r.str()
		case "end_date":
			f = 1 << 1
			s.EndDate, ok = r.date()
		case "customer_account":
			f = 1 << 2
			s.CustomerAccount, ok = r.str()
		case "customer_name":
			f = 1 << 3
			s.CustomerName, ok = r.str()
		case "product":
			f = 1 << 4
			s.Product, ok = r.str()
		case "seats", "seats_assigned":
			f = 1 << 5
			if name == "seats_assigned" {
				f = 1 << 6
			}
			var v int
			if v, ok = r.int(); ok {
				if ints == nil {
					ints = new([2]int) // one allocation for both
				}
				if f == 1<<5 {
					ints[0], s.Seats = v, &ints[0]
				} else {
					ints[1], s.SeatsAssigned = v, &ints[1]
				}
			}
		case "access_model":
			f = 1 << 7
			var v string
			v, ok = r.str()
			s.AccessModel = subscription.AccessModel(v)
		case "term":
			f = 1 << 8
			s.Term, ok = r.str()
		case "start_date":
			f = 1 << 9
			s.StartDate, ok = r.date()
		case "status":
			f = 1 << 10
			var v string
			v, ok = r.str()
			s.Status = subscription.Status(v)
		case "timezone":
			f = 1 << 11
			s.Timezone, ok = r.str()
		case "locale":
			f = 1 << 12
			s.Locale, ok = r.str()
		case "reseller_rep":
			f = 1 << 13
			s.ResellerRep, ok = r.str()
		}
		return f, ok
	}) && r.i == len(r.s)
}

// decodePersonal reads b, the personal part as appendPersonal writes it,
// into p, which must be zero. When it reports false p may be partly
// written.
func decodePersonal(b []byte, p *personal) bool {
	r := jsonReader{s: string(b)}
	return r.object(func(name string) (f uint32, ok bool) {
		switch name {
		case "cm":
			f = 1 << 0
			ok = r.contact(&p.CM)
		case "pa":
			f = 1 << 1
			ok = r.contact(&p.PA)
		case "sa":
			f = 1 << 2
			p.SA, ok = r.strings()
		}
		return f, ok
	}) && r.i == len(r.s)
}

// contact reads a Contact object into c, which must be zero.
func (r *jsonReader) contact(c *subscription.Contact) bool {
	return r.object(func(name string) (f uint32, ok bool) {
		switch name {
		case "name":
			f = 1 << 0
			c.Name, ok = r.str()
		case "email":
			f = 1 << 1
			c.Email, ok = r.str()
		case "phone":
			f = 1 << 2
			c.Phone, ok = r.str()
		}
		return f, ok
	})
}

// object reads an object whose members member reads: given a member's name,
// member reads its value and returns the name's bit (0 for a name it does
// not know) and whether the value could be read. An unknown or repeated
// name makes object report false, like any JSON the encoders do not write.
func (r *jsonReader) object(member func(name string) (bit uint32, ok bool)) bool {
	if !r.byte('{') {
		return false
	}
	if r.byte('}') {
		return true
	}
	var seen uint32
	for {
		name, ok := r.key()
		if !ok {
			return false
		}
		bit, ok := member(name)
		if !ok || bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		if r.byte('}') {
			return true
		}
		if !r.byte(',') {
			return false
		}
	}
}

// strings reads an array of strings. An empty array is an empty, non-nil
// slice, as encoding/json makes it.
func (r *jsonReader) strings() ([]string, bool) {
	if !r.byte('[') {
		return nil, false
	}
	if r.byte(']') {
		return []string{}, true
	}
	out := make([]string, 0, 2)
	for {
		v, ok := r.str()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if r.byte(']') {
			return out, true
		}
		if !r.byte(',') {
			return nil, false
		}
	}
}
