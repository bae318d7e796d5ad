package templates

import "embed"

// MorningFS holds the templates of the reps' morning call-list email
// (morning/subject.txt, body.txt, body.html): the reseller's own staff read
// it, so it stands apart from the customers' notices and their locales.
//
//go:embed morning
var MorningFS embed.FS
