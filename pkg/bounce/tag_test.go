package bounce

import (
	"errors"
	"strings"
	"testing"

	"renewals/pkg/subscription"
)

func TestTagRoundTripAndForgeries(t *testing.T) {
	tg, err := NewTagger("Bounces.Reseller.Example", []byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	key := subscription.NoticeKey{SubscriptionID: "AB-12_x", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45}
	rp := tg.ReturnPath(key, "Jo.Bloggs@Customer.example")
	local, domain, _ := strings.Cut(rp, "@")
	if domain != "bounces.reseller.example" || len(local) > 64 || strings.ContainsAny(local, "@:<> ") || strings.Contains(strings.ToLower(rp), "jo.bloggs") {
		t.Fatalf("ReturnPath = %q", rp)
	}
	for _, addr := range []string{rp, "<" + rp + ">", strings.ToUpper(rp[:7]) + rp[7:strings.LastIndexByte(rp, '=')+1] + strings.ToUpper(rp[strings.LastIndexByte(rp, '=')+1:])} {
		tag, err := tg.Parse(addr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", addr, err)
		}
		if tag.Key != key || !tag.Matches(tg, "jo.bloggs@customer.example") || tag.Matches(tg, "someone@customer.example") {
			t.Errorf("Parse(%q) = %+v", addr, tag)
		}
	}
	mac := strings.LastIndexByte(rp, '=')
	other, _ := NewTagger("bounces.reseller.example", []byte("another-secret-0123456789"))
	for name, tc := range map[string]struct {
		addr string
		want error
	}{
		"bad HMAC":       {rp[:mac+1] + "0000000000000000@bounces.reseller.example", ErrBadMAC},
		"changed key":    {strings.Replace(rp, "=45=", "=30=", 1), ErrBadMAC},
		"other secret":   {other.ReturnPath(key, "jo.bloggs@customer.example"), ErrBadMAC},
		"wrong domain":   {strings.Replace(rp, "@bounces.", "@mail.", 1), ErrForeignDomain},
		"no tag":         {"postmaster@bounces.reseller.example", ErrNoTag},
		"short tag":      {"bounce+1=2=3@bounces.reseller.example", ErrNoTag},
		"not an address": {"bounce+x", ErrForeignDomain},
	} {
		if _, err := tg.Parse(tc.addr); !errors.Is(err, tc.want) {
			t.Errorf("%s: Parse(%q) = %v, want %v", name, tc.addr, err, tc.want)
		}
	}
	if tg.AddressHash("Jo@X.example") != tg.AddressHash(" jo@x.example") || tg.AddressHash("jo@x.example") == other.AddressHash("jo@x.example") {
		t.Error("AddressHash is not the same for one address in any case, or does not depend on the secret")
	}
	if _, err := NewTagger("bounces.example", []byte("short")); err == nil {
		t.Error("NewTagger took a short secret")
	}
}
