package importer

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"renewals/pkg/subscription"
)

// FuzzParseAndValidate feeds arbitrary input through the reader in the given
// format and every record through Validate, and the input through
// ValidateJSON. Nothing may panic; line numbers
// never go back; a subscription without errors obeys every rule; and the CSV row
// guard, run with a tiny limit, leaves every row under it exactly as the
// csv.Reader alone reads it.
func FuzzParseAndValidate(f *testing.F) {
	f.Add([]byte("subscription_id,end_date\n1,2027-05-31\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, format string) {
		rd, err := NewReader(bytes.NewReader(data), Format(format))
		if err != nil {
			if !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("NewReader: error %v is not ErrInvalidFile", err)
			}
			return
		}
		last := 0
		for range 100000 {
			rec, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidFile) {
					t.Fatalf("Next: error %v is not ErrInvalidFile", err)
				}
				break
			}
			// JSON array elements may share a line; rows never do.
			if rec.Line < 1 || rec.Line < last || (rec.Line == last && rd.Format() != FormatJSON) {
				t.Fatalf("record line %d after line %d", rec.Line, last)
			}
			last = rec.Line
			for _, p := range rec.Problems {
				if p.Reason == "" {
					t.Fatalf("problem without a reason: %+v", rec)
				}
			}
			sub, errs := Validate(rec.Fields)
			checkValidated(t, sub, errs)
		}
		_ = rd.UnknownColumns()
		sub, errs := ValidateJSON(data)
		if len(errs) == 0 {
			checkValidated(t, sub, errs)
		} else if slices.ContainsFunc(errs, func(e FieldError) bool { return e.Reason == "" }) {
			t.Fatalf("ValidateJSON: error without a reason: %v", errs)
		}
		checkGuard(t, bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")), 32)
	})
}

func checkValidated(t *testing.T, s subscription.Subscription, errs []FieldError) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range errs {
		if e.Field == "" || e.Reason == "" || seen[e.Field] {
			t.Fatalf("bad error list %v", errs)
		}
		seen[e.Field] = true
	}
	if len(errs) > 0 {
		return
	}
	if subscription.ValidID(s.ID) != nil || s.EndDate.IsZero() || !s.Status.Valid() || !s.AccessModel.Valid() {
		t.Fatalf("accepted %+v", s)
	}
	for _, v := range []string{s.CustomerAccount, s.CustomerName, s.Product, s.Term, s.Timezone, s.Locale,
		s.ResellerRep, s.ContractManager.Name, s.ContractManager.Phone, s.PrimaryAdmin.Name} {
		if !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 ||
			utf8.RuneCountInString(v) > MaxFieldChars || strings.TrimSpace(v) != v {
			t.Fatalf("accepted text %q", v)
		}
	}
	for _, e := range append([]string{s.ContractManager.Email, s.PrimaryAdmin.Email}, s.SecondaryAdmins...) {
		if e == "" {
			continue
		}
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e || a.Name != "" || len(e) > MaxEmailBytes ||
			!strings.Contains(e[strings.LastIndexByte(e, '@'):], ".") {
			t.Fatalf("accepted email %q", e)
		}
	}
	if (s.Seats != nil && *s.Seats < 0) || (s.SeatsAssigned != nil && *s.SeatsAssigned < 0) {
		t.Fatalf("accepted seats %v %v", s.Seats, s.SeatsAssigned)
	}
}

// checkGuard reads data as CSV through a rowGuard of the given limit and
// directly, and compares: the guarded records are never longer than the
// limit, and each one not cut short is the same as the direct one starting on
// the same line.
func checkGuard(t *testing.T, data []byte, limit int) {
	t.Helper()
	direct := map[int][]string{}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	for {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if _, ok := errors.AsType[*csv.ParseError](err); !ok {
				t.Fatalf("direct read: %v", err)
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		direct[line] = row
	}
	g := newRowGuard(bytes.NewReader(data), limit)
	gr := csv.NewReader(g)
	gr.FieldsPerRecord = -1
	last := 0
	for {
		row, err := gr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			pe, ok := errors.AsType[*csv.ParseError](err)
			if !ok {
				t.Fatalf("guarded read: %v", err)
			}
			g.popLong(pe.StartLine)
			continue
		}
		line, _ := gr.FieldPos(0)
		if line <= last {
			t.Fatalf("guarded record at line %d after line %d", line, last)
		}
		last = line
		size := 0
		for _, v := range row {
			size += len(v)
		}
		if size > limit {
			t.Fatalf("guarded record at line %d has %d bytes, over the limit %d", line, size, limit)
		}
		if g.popLong(line) {
			continue
		}
		if want, ok := direct[line]; !ok || !slices.Equal(row, want) {
			t.Fatalf("guarded record at line %d is %q, read directly %q", line, row, want)
		}
	}
}
