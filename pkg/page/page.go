// Package page holds what the API's long lists (the call list, the
// forecast, the notices) share: the limit and cursor of a page, and a
// writer that encodes a JSON answer one row at a time, so that no list is
// ever held whole as JSON.
//
// A cursor is opaque to clients: the base64url of the last row's sort key.
// A page after a cursor starts with the first row whose key sorts after it,
// so rows added or removed between pages move nothing else.
package page

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// MaxLimit is the largest page a client may ask for.
const MaxLimit = 10_000

// ErrCursor is wrapped by Decode's error for a cursor this server did not
// give.
var ErrCursor = errors.New("the cursor is not one this server gave: start again without it")

// Limit reads the limit parameter of q: the most rows to answer, from 1 to
// MaxLimit, or 0 (all) when q has none.
func Limit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, fmt.Errorf("limit %q: use a whole number from 1 to %d", v, MaxLimit)
	}
	return n, nil
}

// Encode makes the cursor of a sort key. No part may hold a newline.
func Encode(key ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(key, "\n")))
}

// Decode returns the sort key of cursor c, which must have fields parts.
func Decode(c string, fields int) ([]string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, fmt.Errorf("cursor %q: %w", c, ErrCursor)
	}
	key := strings.Split(string(b), "\n")
	if len(key) != fields {
		return nil, fmt.Errorf("cursor %q: %w", c, ErrCursor)
	}
	return key, nil
}

// Next sets the Link header of the page that follows r's, at cursor next.
func Next(w http.ResponseWriter, r *http.Request, next string) {
	q := r.URL.Query()
	q.Set("cursor", next)
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
}

// JSON writes a JSON object whose last member is an array, a row at a
// time: Open writes the members before the array and opens it, Row adds one
// element, Close ends the array and the object with the members after it.
// Each row is on a line of its own.
type JSON struct {
	w    io.Writer
	buf  bytes.Buffer
	enc  *json.Encoder
	rows int
}

// NewJSON returns a JSON writer on w.
func NewJSON(w io.Writer) *JSON {
	j := &JSON{w: w}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false)
	return j
}

// Member is one name and value of the object, in the order given.
type Member struct {
	Name  string
	Value any
}

// Open writes "{", the members head and then `"array":[`.
func (j *JSON) Open(array string, head ...Member) error {
	j.buf.Reset()
	j.buf.WriteByte('{')
	for _, m := range head {
		if err := j.member(m); err != nil {
			return err
		}
		j.buf.WriteByte(',')
	}
	if err := j.enc.Encode(array); err != nil {
		return err
	}
	j.trim()
	j.buf.WriteString(":[")
	return j.flush()
}

// Row writes one element of the array.
func (j *JSON) Row(v any) error {
	j.buf.Reset()
	if j.rows > 0 {
		j.buf.WriteByte(',')
	}
	j.buf.WriteByte('\n')
	if err := j.enc.Encode(v); err != nil {
		return err
	}
	j.trim()
	j.rows++
	return j.flush()
}

// Close ends the array and writes the members tail and "}".
func (j *JSON) Close(tail ...Member) error {
	j.buf.Reset()
	if j.rows > 0 {
		j.buf.WriteByte('\n')
	}
	j.buf.WriteByte(']')
	for _, m := range tail {
		j.buf.WriteByte(',')
		if err := j.member(m); err != nil {
			return err
		}
	}
	j.buf.WriteString("}\n")
	return j.flush()
}

func (j *JSON) member(m Member) error {
	if err := j.enc.Encode(m.Name); err != nil {
		return err
	}
	j.trim()
	j.buf.WriteByte(':')
	if err := j.enc.Encode(m.Value); err != nil {
		return fmt.Errorf("encode %s: %w", m.Name, err)
	}
	j.trim()
	return nil
}

// trim drops the newline json.Encoder ends each value with.
func (j *JSON) trim() { j.buf.Truncate(j.buf.Len() - 1) }

func (j *JSON) flush() error {
	_, err := j.w.Write(j.buf.Bytes())
	return err
}

// WriteJSON writes v as the whole JSON answer with status, indented as
// every API answer is. A long list goes through NewJSON instead.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
