package event

// SubjectBounced is published when a notice comes back: a hard bounce
// (the ledger then holds the notice as bounced) or a soft one (recorded
// here only). Its data is NoticeBounced.
const SubjectBounced = "renewals.notice.bounced"

// NoticeBounced is the data of renewals.notice.bounced. Subject: the notice
// key. It names no address: the status code and its words only.
type NoticeBounced struct {
	NoticeOutcome
	// Status is the delivery status code, e.g. "5.1.1".
	Status string `json:"status"`
	// Kind is "hard" (the address is bad; the notice is bounced) or "soft"
	// (delivery delayed; nothing changed).
	Kind string `json:"kind"`
}
