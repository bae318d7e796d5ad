package subscription

import (
	"fmt"
	"strconv"
	"strings"
)

// PostExpiryStage is one of the vendor's stages after the end date: its
// name, and the last day after the end date that it lasts.
type PostExpiryStage struct {
	Name    string
	LastDay int
}

// PostExpiry are the vendor's stages after the end date, in order, each
// lasting until its LastDay after the end date; after the last one the
// subscription is cancelled and can no longer be renewed.
type PostExpiry []PostExpiryStage

// DefaultPostExpiry is Autodesk's: expired for 15 days after the end date,
// then suspended until 45 days after it.
const DefaultPostExpiry = "expired:15,suspended:45"

// StageCancelled is the stage after the last post-expiry stage.
const StageCancelled = "cancelled"

// ParsePostExpiry reads RENEWALS_POST_EXPIRY: comma-separated name:day
// pairs with rising days, e.g. "expired:15,suspended:45". An empty string
// means no stages: a subscription is cancelled the day after its end date.
func ParsePostExpiry(s string) (PostExpiry, error) {
	var out PostExpiry
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	last := 0
	for f := range strings.SplitSeq(s, ",") {
		name, day, ok := strings.Cut(strings.TrimSpace(f), ":")
		n, err := strconv.Atoi(strings.TrimSpace(day))
		name = strings.TrimSpace(name)
		if !ok || err != nil || name == "" || strings.TrimLeft(name, "abcdefghijklmnopqrstuvwxyz_") != "" {
			return nil, fmt.Errorf("stage %q: write each stage as name:days-after-the-end-date, e.g. expired:15,suspended:45", truncate(f, 40))
		}
		if n <= last || n > 3660 {
			return nil, fmt.Errorf("stage %q: each stage must end later than the one before, within 3660 days, e.g. expired:15,suspended:45", truncate(f, 40))
		}
		if name == StageCancelled || name == StageBeforeEnd {
			return nil, fmt.Errorf("stage %q: %s is not a stage name you can give: it is what follows the last stage", name, name)
		}
		out = append(out, PostExpiryStage{Name: name, LastDay: n})
		last = n
	}
	return out, nil
}

// LastDay is the last day after the end date on which the subscription can
// still be renewed: the last stage's (0 without stages: the end date).
func (p PostExpiry) LastDay() int {
	if len(p) == 0 {
		return 0
	}
	return p[len(p)-1].LastDay
}

// Stage returns the stage of a subscription daysAfter days after its end
// date (1 the day after): "" on or before the end date, a stage's name, or
// StageCancelled after the last.
func (p PostExpiry) Stage(daysAfter int) string {
	if daysAfter <= 0 {
		return ""
	}
	for _, s := range p {
		if daysAfter <= s.LastDay {
			return s.Name
		}
	}
	return StageCancelled
}

// String writes the stages as the configuration does.
func (p PostExpiry) String() string {
	parts := make([]string, len(p))
	for i, s := range p {
		parts[i] = s.Name + ":" + strconv.Itoa(s.LastDay)
	}
	return strings.Join(parts, ",")
}
