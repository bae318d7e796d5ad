package config

import (
	"fmt"
	"slices"
	"strings"
)

// Variables lists every RENEWALS_* variable that the binary reads, so that a
// misspelt one is reported at start instead of silently ignored. Each but
// RENEWALS_SERVER (the clients' --server) and the reserved ones is read by
// Flags, with a flag of its own.
var Variables = append([]string{
	"RENEWALS_ACK_WAIT", "RENEWALS_API_TOKEN", "RENEWALS_BOUNCE_DOMAIN", "RENEWALS_BOUNCE_LISTEN",
	"RENEWALS_BOUNCE_SECRET", "RENEWALS_DATA_DIR", "RENEWALS_DKIM_KEY_FILE", "RENEWALS_DKIM_SELECTOR", "RENEWALS_DRAIN",
	"RENEWALS_GRACE_DAYS", "RENEWALS_HTTP_ADDR", "RENEWALS_LOG_FORMAT", "RENEWALS_LOG_LEVEL",
	"RENEWALS_MAIL_FROM", "RENEWALS_MAX_IMPORT_BYTES", "RENEWALS_MILESTONES", "RENEWALS_NATS_CREDS",
	"RENEWALS_NATS_LISTEN", "RENEWALS_NATS_SYNC", "RENEWALS_NATS_URL", "RENEWALS_POST_EXPIRY", "RENEWALS_REDIS_URL", "RENEWALS_REPLICAS", "RENEWALS_REPS_FILE", "RENEWALS_RESELLER_EMAIL",
	"RENEWALS_RESELLER_NAME", "RENEWALS_RESELLER_PHONE", "RENEWALS_RESELLER_WEBSITE",
	"RENEWALS_SCHEDULE", "RENEWALS_SERVER", "RENEWALS_SMTP_URL", "RENEWALS_TARGET",
	"RENEWALS_TIMEZONE", "RENEWALS_USERS_FILE", "RENEWALS_WORKERS",
}, reserved...)

// reserved are the variables that later capabilities name in the
// interface: setting one ahead of time is not reported as a typo.
var reserved = []string{}

// Unknown returns one warning for each RENEWALS_* variable in environ (as
// os.Environ gives it) that the binary does not read, naming the nearest
// known one: "RENEWALS_WORKRS is not a renewals setting: did you mean
// RENEWALS_WORKERS?".
func Unknown(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "RENEWALS_") || slices.Contains(Variables, name) {
			continue
		}
		best, dist := "", -1
		for _, v := range Variables {
			if d := editDistance(name, v); dist < 0 || d < dist {
				best, dist = v, d
			}
		}
		if dist <= max(3, len(name)/4) {
			out = append(out, fmt.Sprintf("%s is not a renewals setting and is ignored: did you mean %s?", name, best))
		} else {
			out = append(out, fmt.Sprintf("%s is not a renewals setting and is ignored: see 'renewals serve --help' for the list", name))
		}
	}
	slices.Sort(out)
	return out
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
