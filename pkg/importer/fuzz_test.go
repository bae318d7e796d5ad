package importer

import (
	"bytes"
	"errors"
	"io"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"

	"renewals/pkg/subscription"
)

// FuzzParseAndValidate feeds arbitrary input through the reader in the given
// format and every record through Validate, and the input through
// ValidateJSON. Nothing may panic, line numbers never go back, and a
// subscription without errors obeys every rule.
func FuzzParseAndValidate(f *testing.F) {
	f.Add([]byte("subscription_id,end_date\n1,2027-05-31\n"), "")
	f.Add([]byte("Subscription ID;End Date;Seat Quantity\r\n1;31/05/2027;4\r\n"), "")
	book := excelize.NewFile()
	book.SetSheetRow("Sheet1", "A1", &[]any{"Subscription ID", "End Date", "Offering Name"})
	book.SetSheetRow("Sheet1", "A2", &[]any{"1", day("2027-05-31"), "AutoCAD & LT"})
	var wb bytes.Buffer
	if _, err := book.WriteTo(&wb); err != nil {
		f.Fatal(err)
	}
	f.Add(wb.Bytes(), "")
	f.Fuzz(func(t *testing.T, data []byte, format string) {
		rd, err := NewReader(bytes.NewReader(data), Format(format))
		if err != nil {
			if !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("NewReader: error %v is not ErrInvalidFile", err)
			}
			return
		}
		defer rd.Close() // a workbook's temporary file
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
