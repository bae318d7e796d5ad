package subscription

import (
	"strings"
	"testing"
)

func TestDateText(t *testing.T) {
	for _, s := range []string{"0001-01-01", "2027-05-31", "2028-02-29", "9999-12-31"} {
		if got := MustDate(s).String(); got != s {
			t.Errorf("MustDate(%q).String() = %q", s, got)
		}
	}
	if got := (Date{}).String(); got != "" {
		t.Errorf("the zero Date is written %q, want \"\"", got)
	}
	if got := (NoticeKey{SubscriptionID: "1", Milestone: 30}).String(); got != "1::30" {
		t.Errorf("a key without an end date is written %q", got)
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"1", "110001234567", "abc-DEF_123", strings.Repeat("9", 64)} {
		if err := ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", strings.Repeat("9", 65), "a b", "a:b", "a.b", "a/b", "ü", "a\n"} {
		if ValidID(id) == nil {
			t.Errorf("ValidID(%q) accepted it", id)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"Renewal due":                     "Renewal due",
		" Renewal\r\nBcc: x@example.com ": "Renewal Bcc: x@example.com",
		"a\t\tb\u0085c\u00a0d":            "a b c d",
		"Final reminder: ends in 1 day\n": "Final reminder: ends in 1 day",
		"a\t\v\f  b\u2028d":               "a b d",
		"\n\r\t ":                         "",
		"Ölfeld — x":                      "Ölfeld — x",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
