package importer

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	"renewals/pkg/subscription"
)

// The vendor's data as it comes: the column names of Autodesk's account
// export (subscription_id, offering_name, seat_quantity, ...) and their
// spreadsheet spellings ("Subscription ID", "Offering Name", "Seat
// Quantity"), its status words, and any other layout through a column map.

// headerKey is the form in which header names are compared: lower-case
// letters and digits only, so that "Subscription ID", "subscription_id",
// "subscriptionId" and "SUBSCRIPTION-ID" are one name.
func headerKey(name string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return -1
	}, strings.ToLower(name))
}

// aliases maps the header key of a vendor's column name to the field it
// holds. Each field's own name is matched as well (see layout.fieldOf).
var aliases = map[string]string{
	// Autodesk's account export (Subscriptions section).
	"offeringname":          "product",
	"productname":           "product",
	"seatquantity":          "seats",
	"quantity":              "seats",
	"subscriptionstatus":    "status",
	"contractmanageremail":  "cm_email",
	"contractmanagername":   "cm_name",
	"contractmanagerphone":  "cm_phone",
	"teamalias":             "team",
	"teamname":              "team",
	"accountname":           "customer_name",
	"endcustomername":       "customer_name",
	"companyname":           "customer_name",
	"customer":              "customer_name",
	"accountcsn":            "customer_account",
	"csn":                   "customer_account",
	"endcustomercsn":        "customer_account",
	"endcustomeraccountcsn": "customer_account",
	"primaryadminemail":     "pa_email",
	"primaryadminname":      "pa_name",
	"assignedseats":         "seats_assigned",
	"seatsinuse":            "seats_assigned",
	"quoteexpirydate":       "quote_expiry",
	"quotevaliduntil":       "quote_expiry",
	"quotelink":             "quote_url",
}

// layout is how a kind of file names its columns: by the header keys of the
// fields' own names, and of the vendor's names for them.
type layout struct{ own, aliases map[string]string }

var subscriptionLayout = layout{keysOf(knownFields[:]), aliases}

// keysOf maps the header key of each field's own name to the field.
func keysOf(fields []string) map[string]string {
	m := make(map[string]string, len(fields))
	for _, f := range fields {
		m[headerKey(f)] = f
	}
	return m
}

// fieldOf returns the field that a column of that name holds, and whether
// it is the field's own name (which wins over an alias of it).
func (l layout) fieldOf(name string) (field string, own bool) {
	k := headerKey(name)
	if f, ok := l.own[k]; ok {
		return f, true
	}
	return l.aliases[k], false
}

// statusWords maps the vendor's status words, as headerKey gives them, to
// ours. Expired and Suspended are stages of a subscription that was not
// renewed (RENEWALS_POST_EXPIRY reckons them from the end date), so it stays
// active: on the call list as lapsed while within the grace days.
var statusWords = map[string]subscription.Status{
	"active":            subscription.StatusActive,
	"expired":           subscription.StatusActive,
	"suspended":         subscription.StatusActive,
	"renewalinprogress": subscription.StatusRenewalInProgress,
	"canceled":          subscription.StatusCancelled,
	"cancelled":         subscription.StatusCancelled,
	"terminated":        subscription.StatusCancelled,
	"inactive":          subscription.StatusCancelled,
}

// statusOf returns our status for a status word, ours or the vendor's, in
// any case.
func statusOf(word string) (subscription.Status, bool) {
	st, ok := statusWords[headerKey(word)]
	return st, ok
}

// MaxMapLines bounds a column map.
const MaxMapLines = 200

// ParseMap reads a column map: one "their column = our field" a line, for
// a layout that the import does not know; blank lines and lines starting
// with # are skipped. Their column is matched as header names are (case,
// spaces and punctuation aside); our field must be a field of the import
// format. It returns the map from their column's header key to our field,
// or a *FileError naming the line at fault.
func ParseMap(r io.Reader) (map[string]string, error) {
	return parseMap(r, knownFields[:])
}

// ParseUsageMap is ParseMap for a usage export, whose fields are
// subscription_id, contract_number, product, last_used and days_inactive.
func ParseUsageMap(r io.Reader) (map[string]string, error) {
	return parseMap(r, usageFields[:])
}

func parseMap(r io.Reader, fields []string) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxRowBytes)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\uFEFF"))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(m) >= MaxMapLines {
			return nil, &FileError{Line: line, Reason: fmt.Sprintf("the column map has more than %d lines: map only the columns that differ", MaxMapLines)}
		}
		their, our, ok := strings.Cut(s, "=")
		their, our = strings.TrimSpace(their), strings.ToLower(strings.TrimSpace(our))
		if !ok || headerKey(their) == "" || our == "" {
			return nil, &FileError{Line: line, Reason: fmt.Sprintf("%q is not a mapping: write one \"their column = our field\" a line, e.g. Serial Number = subscription_id", truncate(s, 60))}
		}
		if !slices.Contains(fields, our) {
			return nil, &FileError{Line: line, Reason: fmt.Sprintf("%q is not a field of the import: use one of %s", truncate(our, 40), strings.Join(fields, ", "))}
		}
		if prev, ok := m[headerKey(their)]; ok && prev != our {
			return nil, &FileError{Line: line, Reason: fmt.Sprintf("column %q is mapped twice: keep one line for it", truncate(their, 40))}
		}
		m[headerKey(their)] = our
	}
	if err := sc.Err(); err != nil {
		return nil, &FileError{Line: line + 1, Reason: fmt.Sprintf("the column map cannot be read (%v): give one short \"their column = our field\" a line", err)}
	}
	return m, nil
}

// MapArg writes a column map for the HTTP API's repeated "map" query
// parameter: "their key=our field" each.
func MapArg(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}
