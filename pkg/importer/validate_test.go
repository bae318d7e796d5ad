package importer

import (
	"strings"
	"testing"
)

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		field, value, want string
	}{
		{"end_date", "31/05/2027", `"31/05/2027" is not a date: use YYYY-MM-DD, e.g. 2027-05-31`},
		{"end_date", "1.2.2027", `"1.2.2027" is not a date: use YYYY-MM-DD, e.g. 2027-02-01`},
		{"end_date", "2027-5-31", `"2027-5-31" is not a date: use YYYY-MM-DD, e.g. 2027-05-31`},
		{"end_date", "2027-05-31T00:00:00Z", `is not a date: use YYYY-MM-DD`},
		{"start_date", "05/31/2027", `"05/31/2027" is not a date: use YYYY-MM-DD, e.g. 2027-05-31`},
		{"subscription_id", "a/b", `"a/b" is not a subscription id: use 1 to 64 letters, digits, '-' or '_'`},
		{"subscription_id", strings.Repeat("9", 65), `is not a subscription id`},
		{"seats", "-1", `"-1" is not a number of seats: use a whole number of 0 or more, e.g. 25`},
		{"seats", "+1", `is not a number of seats`},
		{"seats_assigned", "2.0", `is not a number of seats`},
		{"seats", "99999999999999999999999", `is not a number of seats`},
		{"access_model", "shared", `"shared" is not an access model: use single-user or multi-user`},
		{"status", "paused", `"paused" is not a status: use active, renewal_in_progress or cancelled`},
		{"cm_email", "Jane <jane@x.example>", `is not an email address: give the bare address alone, such as jane@example.com`},
		{"cm_email", "<jane@x.example>", `give the bare address alone`},
		{"cm_email", "jane@x.example (Jane)", `give the bare address alone`},
		{"pa_email", "jane", `"jane" is not an email address: give one address such as jane@example.com`},
		{"pa_email", "a@x.example, b@x.example", `give exactly one address`},
		{"cm_email", strings.Repeat("a", 246) + "@x.example", `is 256 bytes long, and an address is at most 254`},
		{"cm_email", "a@x.example\r\nBcc: b@x.example", `contains a line break`},
		{"cm_email", "ann@acme", `"ann@acme" is not an email address: the domain "acme" has no dot, so no mail can reach it on the internet: give the full domain, such as ann@acme.com`},
		{"cm_email", "jane@localhost", `the domain "localhost" has no dot, so no mail can reach it on the internet: give the full domain, such as jane@example.com`},
		{"cm_email", "jane.doe+tag@mail-server", `the domain "mail-server" has no dot`},
		{"pa_email", "ann@ACME", `the domain "ACME" has no dot`},
		{"sa_emails", "a@x.example;b@intranet", `"b@intranet" is not an email address: the domain "intranet" has no dot`},
		{"sa_emails", "a@x.example;;b", `"b" is not an email address: give one address such as jane@example.com (separate addresses with ;)`},
		{"timezone", "Mars/Olympus", `"Mars/Olympus" is not an IANA time zone: use a name such as Europe/London`},
		{"timezone", "Local", `is not an IANA time zone`},
		{"timezone", "../../etc/passwd", `is not an IANA time zone`},
		{"locale", "english", `"english" is not a language tag: use a BCP 47 tag such as en-GB or de-DE`},
		{"locale", "x-private", `is not a language tag`},
		{"locale", "en-GB-", `is not a language tag`},
		{"customer_name", "a\nb", `contains a line break: put the value on one line, without control characters`},
		{"cm_phone", "1\x002", `contains a control character (U+0000)`},
		{"product", "tab\tbed", `contains a tab`},
		{"cm_name", "\xff\xfe", `is not valid UTF-8 text: save the file as UTF-8`},
		{"reseller_rep", strings.Repeat("é", 257), `is 257 characters long: shorten it to at most 256`},
		{"term", strings.Repeat("x", 300), `is 300 characters long`},
	} {
		fields := map[string]string{"subscription_id": "1", "end_date": "2027-05-31"}
		fields[tc.field] = tc.value
		_, errs := Validate(fields)
		if len(errs) != 1 || errs[0].Field != tc.field || !strings.Contains(errs[0].Reason, tc.want) {
			t.Errorf("%s=%q: got %v, want one error on %s containing %q", tc.field, tc.value, errs, tc.field, tc.want)
		}
	}
}

func TestValidateMissingRequired(t *testing.T) {
	_, errs := Validate(map[string]string{"subscription_id": "  ", "customer_name": "x"})
	if len(errs) != 2 || errs[0].Field != "subscription_id" || errs[1].Field != "end_date" ||
		errs[0].Reason != "is missing: every row needs the subscription id" ||
		!strings.HasPrefix(errs[1].Reason, "is missing: every row needs the end date") {
		t.Errorf("errors %v", errs)
	}
}

func TestValidateAccepts(t *testing.T) {
	s, errs := Validate(map[string]string{
		"subscription_id": " AB-12_x ", "end_date": "2027-05-31", "start_date": "2026-06-01",
		"seats": "0", "seats_assigned": "007", "access_model": "Multi-User", "status": "Renewal_In_Progress",
		"cm_name": "  José Ñúñez 王 ", "cm_email": "josé@bücher.example", "pa_email": "pa+tag@x.example",
		"sa_emails": "", "timezone": "Asia/Kolkata", "locale": "pt-br", "customer_name": strings.Repeat("é", 256),
		"unknown": "\x00ignored",
	})
	if len(errs) > 0 {
		t.Fatalf("errors %v", errs)
	}
	if s.ID != "AB-12_x" || s.EndDate.String() != "2027-05-31" || s.StartDate.String() != "2026-06-01" ||
		*s.Seats != 0 || *s.SeatsAssigned != 7 || s.AccessModel != "multi-user" || s.Status != "renewal_in_progress" ||
		s.ContractManager.Name != "José Ñúñez 王" || s.ContractManager.Email != "josé@bücher.example" ||
		s.PrimaryAdmin.Email != "pa+tag@x.example" || s.SecondaryAdmins != nil || s.Timezone != "Asia/Kolkata" ||
		s.Locale != "pt-BR" {
		t.Errorf("subscription %+v", s)
	}
}

func TestValidateDefaults(t *testing.T) {
	s, errs := Validate(map[string]string{"subscription_id": "1", "end_date": "2027-05-31", "status": " "})
	if len(errs) > 0 || s.Status != "active" || s.Seats != nil || !s.StartDate.IsZero() || !s.ContractManager.IsZero() {
		t.Errorf("subscription %+v, errors %v", s, errs)
	}
}

func TestValidateJSON(t *testing.T) {
	s, errs := ValidateJSON([]byte(` {"Subscription_ID": 42, "end_date": "2027-05-31", "seats": 3, "cm_phone": null, "crm": [1]} `))
	if len(errs) > 0 || s.ID != "42" || *s.Seats != 3 || s.EndDate.String() != "2027-05-31" {
		t.Errorf("subscription %+v, errors %v", s, errs)
	}
	_, errs = ValidateJSON([]byte(`{"subscription_id": true, "end_date": "31/05/2027"}`))
	if len(errs) != 2 || errs[0].Error() != "subscription_id: is a JSON boolean: give a string or a number" ||
		errs[1].Error() != `end_date: "31/05/2027" is not a date: use YYYY-MM-DD, e.g. 2027-05-31` {
		t.Errorf("errors %v", errs)
	}
	// The same field under two spellings is refused, whichever the
	// object's order (a map's, when read) would have kept.
	for range 20 {
		_, errs = ValidateJSON([]byte(`{"subscription_id": "1", "end_date": "2027-05-31", "customer_name": "first", "Customer_Name": "second"}`))
		if len(errs) != 1 || errs[0].Error() != "customer_name: is given twice, under names that differ only in case or spaces: give it once" {
			t.Fatalf("errors %v, want customer_name given twice", errs)
		}
	}
	for _, in := range []string{`[{}]`, `{"a":`, ``, `{"customer_name":"` + strings.Repeat("x", MaxRowBytes) + `"}`} {
		if _, errs := ValidateJSON([]byte(in)); len(errs) != 1 || errs[0].Field != "" {
			t.Errorf("%.20q: errors %v, want one about the whole object", in, errs)
		}
	}
}
