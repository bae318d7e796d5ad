package subscription

import (
	"strings"
	"testing"
)

func TestParsePostExpiry(t *testing.T) {
	p, err := ParsePostExpiry(DefaultPostExpiry)
	if err != nil || p.String() != DefaultPostExpiry || p.LastDay() != 45 {
		t.Fatalf("default: %v %v", p, err)
	}
	for days, want := range map[int]string{-3: "", 0: "", 1: "expired", 15: "expired", 16: "suspended", 45: "suspended", 46: StageCancelled} {
		if got := p.Stage(days); got != want {
			t.Errorf("Stage(%d) = %q, want %q", days, got, want)
		}
	}
	if p, err := ParsePostExpiry(""); err != nil || len(p) != 0 || p.Stage(1) != StageCancelled {
		t.Errorf("empty: %v %v", p, err)
	}
	for _, bad := range []string{"expired", "expired:x", "expired:15,suspended:10", "cancelled:3", ":4", "Expired:3"} {
		if _, err := ParsePostExpiry(bad); err == nil || !strings.Contains(err.Error(), "e.g.") && !strings.Contains(err.Error(), "follows") {
			t.Errorf("ParsePostExpiry(%q) = %v, want a sentence saying what to write", bad, err)
		}
	}
}

func TestPostExpiryMilestone(t *testing.T) {
	ms, err := ParseMilestones("90,45,30,-1")
	if err != nil || ms.String() != "90,45,30,-1" || ms.Max() != 90 || ms.Min() != -1 {
		t.Fatalf("%v %v", ms, err)
	}
	if _, err := ParseMilestones("-1"); err == nil {
		t.Errorf("milestones with none before the end date were accepted")
	}
	if _, err := ParseMilestones("30,0"); err == nil {
		t.Errorf("a 0 milestone was accepted")
	}
	for days, want := range map[int]int{0: 30, -1: -1, -14: -1, -15: 0, 31: 45} {
		got, ok := ms.Stage(days)
		if (want == 0) == ok || ok && got != want {
			t.Errorf("Stage(%d) = %d %v, want %d", days, got, ok, want)
		}
	}
	if _, ok := DefaultMilestones.Stage(-1); ok {
		t.Errorf("the default milestones have a stage after the end date")
	}
	s := Subscription{ID: "x", EndDate: MustDate("2027-01-31"), Status: StatusActive}
	n, ok := Due(s, -1, ms, nil)
	if !ok || n.Key.String() != "x:2027-01-31:-1" {
		t.Errorf("Due the day after = %v %v", n, ok)
	}
	if k, err := ParseNoticeKey("x:2027-01-31:-1"); err != nil || k != n.Key {
		t.Errorf("ParseNoticeKey: %v %v", k, err)
	}
	if _, ok := Due(s, -1, ms, func(NoticeKey) bool { return true }); ok {
		t.Errorf("due again after it was sent")
	}
	s.Status = StatusRenewalInProgress
	if _, ok := Due(s, -1, ms, nil); ok {
		t.Errorf("due while renewal is in progress")
	}
	today := MustDate("2027-02-01")
	from, _ := Window(today, ms)
	if from.DaysUntil(today) < 1+PostExpiryNoticeDays {
		t.Errorf("the window from %v does not reach back over the post-expiry days", from)
	}
}
