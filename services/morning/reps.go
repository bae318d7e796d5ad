package morning

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"
)

// Rep is one of the reseller's reps: the name subscriptions carry in
// reseller_rep, and the rep's own email.
type Rep struct {
	Name  string
	Email string
}

// ReadReps reads RENEWALS_REPS_FILE: CSV lines of name,email, with an
// optional header row "name,email"; blank lines and lines starting with #
// are skipped.
func ReadReps(path string) ([]Rep, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("RENEWALS_REPS_FILE: %w", err)
	}
	defer f.Close()
	reps, err := ParseReps(f)
	if err != nil {
		return nil, fmt.Errorf("RENEWALS_REPS_FILE %s: %w", path, err)
	}
	return reps, nil
}

// ParseReps reads the reps from r (see ReadReps). A line that is not a
// name and one email address is an error naming the line.
func ParseReps(r io.Reader) ([]Rep, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var out []Rep
	seen := map[string]bool{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v: write each rep as name,email", line, err)
		}
		if len(rec) == 2 && strings.EqualFold(strings.TrimSpace(rec[0]), "name") && strings.EqualFold(strings.TrimSpace(rec[1]), "email") {
			continue
		}
		if len(rec) != 2 || strings.TrimSpace(rec[0]) == "" {
			return nil, fmt.Errorf("line %d: write each rep as name,email (the name as subscriptions give it in reseller_rep)", line)
		}
		a, err := mail.ParseAddress(strings.TrimSpace(rec[1]))
		if err != nil || a.Name != "" {
			return nil, fmt.Errorf("line %d: the second field is not one email address: give it as rep@example.com", line)
		}
		name := strings.TrimSpace(rec[0])
		if seen[strings.ToLower(name)] {
			return nil, fmt.Errorf("line %d: this rep appears on an earlier line too: give each rep once", line)
		}
		seen[strings.ToLower(name)] = true
		out = append(out, Rep{Name: name, Email: a.Address})
	}
	return out, nil
}
