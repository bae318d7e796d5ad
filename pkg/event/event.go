// Package event defines the events renewals publishes: CloudEvents 1.0 in
// structured JSON mode, their NATS subjects and their payloads. Payloads carry
// ids, dates and outcomes only: never a name, an email address or a phone.
package event

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"renewals/pkg/subscription"
)

// Subjects. Every outbound subject lives in the RENEWALS stream.
const (
	SubjectDuePrefix     = "renewals.notice.due." // + milestone
	SubjectSent          = "renewals.notice.sent"
	SubjectSkipped       = "renewals.notice.skipped"
	SubjectFailed        = "renewals.notice.failed"
	SubjectUndeliverable = "renewals.notice.undeliverable"
	SubjectUpserted      = "renewals.subscription.upserted"
	SubjectErased        = "renewals.subscription.erased"
	SubjectCalllist      = "renewals.calllist.updated"
	SubjectCallRecorded  = "renewals.call.recorded"
	// SubjectIngest is inbound (request/reply) and is not in the stream.
	SubjectIngest = "renewals.ingest.subscription"
)

// StreamName is the JetStream stream that holds every outbound event.
const StreamName = "RENEWALS"

// StreamSubjects are the subjects of the RENEWALS stream.
var StreamSubjects = []string{"renewals.notice.>", "renewals.subscription.>", "renewals.calllist.>", "renewals.call.>"}

// SubjectDue returns the subject of a due notice for milestone m.
func SubjectDue(m int) string { return SubjectDuePrefix + strconv.Itoa(m) }

// OutcomeSubject returns the subject for a notice outcome.
func OutcomeSubject(o subscription.Outcome) string {
	return "renewals.notice." + string(o)
}

// Source is the CloudEvents source attribute of every event renewals emits.
const Source = "/renewals"

// Event is a CloudEvents 1.0 event in structured JSON mode.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// New builds an event of the given subject (its type is the subject with a
// version suffix, e.g. renewals.notice.sent.v1), CloudEvents subject and data.
func New(natsSubject, subject string, at time.Time, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s event: %w", natsSubject, err)
	}
	e := header(natsSubject, subject, at)
	e.Data = raw
	return e, nil
}

// header is the event of natsSubject without its data.
func header(natsSubject, subject string, at time.Time) Event {
	return Event{
		SpecVersion:     "1.0",
		ID:              newID(),
		Source:          Source,
		Type:            TypeOf(natsSubject),
		Time:            at.UTC(),
		Subject:         subject,
		DataContentType: "application/json",
	}
}

// envelope is Event with its data as the value itself, for Encode and
// Decode to write and read it in place: its Data, the shallower field of
// the name "data", is the one encoding/json reads and writes.
type envelope struct {
	Event
	Data any `json:"data"`
}

// Encode returns the JSON of the event that New builds, as natsbus
// publishes it, in one encoding: data is written in place, not encoded on
// its own first and then checked and copied into the event.
func Encode(natsSubject, subject string, at time.Time, data any) ([]byte, error) {
	b, err := json.Marshal(envelope{header(natsSubject, subject, at), data})
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", natsSubject, err)
	}
	return b, nil
}

// TypeOf returns the versioned CloudEvents type for a NATS subject. Due
// notices of every milestone share one type.
func TypeOf(natsSubject string) string {
	if len(natsSubject) > len(SubjectDuePrefix) && natsSubject[:len(SubjectDuePrefix)] == SubjectDuePrefix {
		return "renewals.notice.due.v1"
	}
	return natsSubject + ".v1"
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Decode reads a structured-mode event and its data into data (when non-nil,
// a pointer). It returns an error when b is not JSON, not a CloudEvents 1.0
// event, or its data does not decode into data. With data given, the event
// and its data are read in one pass and the returned Event's Data is left
// empty: the data member is decoded straight into data, not copied out
// first and read again.
func Decode(b []byte, data any) (Event, error) {
	if data == nil {
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			return Event{}, fmt.Errorf("decode event: %w", err)
		}
		return e, checkEvent(e)
	}
	if v := reflect.ValueOf(data); v.Kind() != reflect.Pointer || v.IsNil() {
		return Event{}, fmt.Errorf("decode event: data must be a non-nil pointer, not %T", data)
	}
	// Data is an interface holding the member's reader: encoding/json
	// hands it the member's bytes, which it decodes into data.
	member := &dataMember{into: data}
	in := envelope{Data: member}
	if err := json.Unmarshal(b, &in); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	e := in.Event
	// The envelope is judged first, then its data.
	if err := checkEvent(e); err != nil {
		return Event{}, err
	}
	// A null member sets Data to nil without calling the reader: data
	// stays as it was, as decoding null into it would leave it.
	if !member.seen && in.Data != nil {
		return Event{}, fmt.Errorf("decode %s data: the event has no data", e.Type)
	}
	if member.err != nil {
		return Event{}, fmt.Errorf("decode %s data: %w", e.Type, member.err)
	}
	return e, nil
}

// dataMember reads an event's data member into a value, and keeps what
// became of it for Decode to tell once the envelope is read.
type dataMember struct {
	into any
	seen bool
	err  error
}

func (d *dataMember) UnmarshalJSON(b []byte) error {
	d.seen = true
	d.err = json.Unmarshal(b, d.into)
	return nil
}

// checkEvent refuses an envelope that is not a CloudEvents 1.0 event.
func checkEvent(e Event) error {
	if e.SpecVersion != "1.0" || e.Type == "" || e.ID == "" {
		return fmt.Errorf("decode event: not a CloudEvents 1.0 event")
	}
	return nil
}

// NoticeDue is the data of renewals.notice.due.<milestone>: the scheduler
// found the notice due. Subject: the notice key.
type NoticeDue struct {
	NoticeKey      subscription.NoticeKey `json:"notice_key"`
	SubscriptionID string                 `json:"subscription_id"`
	EndDate        subscription.Date      `json:"end_date"`
	Milestone      int                    `json:"milestone"`
	DaysLeft       int                    `json:"days_left"`
	AsOf           subscription.Date      `json:"as_of"`
	// Resend is set on a notice a person asked to send again (POST
	// /api/v1/notices/{key}/resend): a later milestone does not supersede it.
	Resend bool `json:"resend,omitempty"`
	// ContractKeys, when set, are the keys of the notices of one contract
	// that co-term (same contract number, end date and contract manager) and
	// are due for this milestone, this one included, in key order: they go
	// as one email. Each key's own due event carries the same list.
	ContractKeys []subscription.NoticeKey `json:"contract_keys,omitempty"`
}

// NoticeOutcome is the data of renewals.notice.sent, .skipped, .failed and
// .undeliverable. Subject: the notice key.
type NoticeOutcome struct {
	NoticeKey      subscription.NoticeKey `json:"notice_key"`
	SubscriptionID string                 `json:"subscription_id"`
	EndDate        subscription.Date      `json:"end_date"`
	Milestone      int                    `json:"milestone"`
	Outcome        subscription.Outcome   `json:"outcome"`
	Reason         string                 `json:"reason,omitempty"`
	Role           subscription.Role      `json:"role,omitempty"`
	Attempts       int                    `json:"attempts,omitempty"`
	Ambiguous      bool                   `json:"ambiguous,omitempty"`
}

// SubscriptionUpserted is the data of renewals.subscription.upserted.
// Subject: the subscription id.
type SubscriptionUpserted struct {
	SubscriptionID string              `json:"subscription_id"`
	Change         subscription.Change `json:"change"`
	EndDate        subscription.Date   `json:"end_date"`
	Status         subscription.Status `json:"status"`
	NewTerm        bool                `json:"new_term,omitempty"`
}

// SubscriptionErased is the data of renewals.subscription.erased.
// Subject: the subscription id.
type SubscriptionErased struct {
	SubscriptionID string `json:"subscription_id"`
}

// CalllistUpdated is the data of renewals.calllist.updated. Subject: the
// subscription id whose entry changed.
type CalllistUpdated struct {
	SubscriptionID string `json:"subscription_id"`
	OnList         bool   `json:"on_list"`
	Reason         string `json:"reason,omitempty"`
}

// CallRecorded is the data of renewals.call.recorded: a renewal call and
// its outcome. Subject: the subscription id. It carries no note and no
// name: neither the caller's nor the customer's.
type CallRecorded struct {
	SubscriptionID string                   `json:"subscription_id"`
	CallID         string                   `json:"call_id"`
	EndDate        subscription.Date        `json:"end_date"`
	CalledOn       subscription.Date        `json:"called_on"`
	Outcome        subscription.CallOutcome `json:"outcome"`
	CallbackOn     subscription.Date        `json:"callback_on,omitzero"`
	Seats          *int                     `json:"seats,omitempty"`
	Reason         string                   `json:"reason,omitempty"`
	// Status is the subscription's status after the call.
	Status subscription.Status `json:"status"`
}
