package bounce

import "strings"

// words says the enhanced status codes of RFC 3463 (and the registry's
// common additions) as a person would, for the call list: what is wrong and
// so what to do about it.
var words = map[string]string{
	"0.0":  "no reason given",
	"1.0":  "bad address",
	"1.1":  "user unknown",
	"1.2":  "domain unknown",
	"1.3":  "malformed address",
	"1.4":  "ambiguous address",
	"1.6":  "mailbox has moved",
	"1.10": "recipient not found",
	"2.0":  "mailbox unavailable",
	"2.1":  "mailbox disabled",
	"2.2":  "mailbox full",
	"2.3":  "message too large for the mailbox",
	"2.4":  "mailing list expansion problem",
	"3.0":  "mail system problem",
	"3.1":  "mail system full",
	"3.2":  "system not accepting mail",
	"4.0":  "routing problem",
	"4.1":  "no answer from the host",
	"4.2":  "connection dropped",
	"4.3":  "directory server failure",
	"4.4":  "unable to route",
	"4.6":  "routing loop",
	"4.7":  "delivery time expired",
	"5.0":  "protocol problem",
	"6.0":  "content not accepted",
	"7.0":  "refused by policy",
	"7.1":  "delivery not authorised",
	"7.23": "SPF check failed",
	"7.25": "reverse DNS check failed",
	"7.26": "authentication (DKIM/SPF/DMARC) failed",
}

// StatusWords says an enhanced status code such as "5.1.1" in words ("user
// unknown"); a code it does not know is said by its class.
func StatusWords(status string) string {
	class, detail, ok := strings.Cut(status, ".")
	if !ok {
		return "delivery status unknown"
	}
	if w, ok := words[detail]; ok {
		return w
	}
	switch class {
	case "5":
		return "permanent failure"
	case "4":
		return "temporary failure"
	}
	return "delivery status " + status
}
