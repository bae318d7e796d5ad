package bounce

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
)

// Kind is what a message that came back to a bounce address is.
type Kind string

// The kinds of returned mail.
const (
	// Hard: delivery failed for good (a 5.x.x status). The address is bad.
	Hard Kind = "hard"
	// Soft: delivery is delayed or failed for now (a 4.x.x status, or the
	// action "delayed"). Recorded; nothing else changes.
	Soft Kind = "soft"
	// AutoReply: an out-of-office or other automatic answer: not a bounce.
	AutoReply Kind = "auto-reply"
	// Delivered: a success notice (action delivered, relayed or expanded).
	Delivered Kind = "delivered"
)

// ErrUnreadable: the message is not one Parse can read as a bounce. Its
// errors wrap it and say what was missing.
var ErrUnreadable = errors.New("not a readable bounce")

// MaxSize is the most of a message Parse reads; the bounce receiver refuses
// larger ones at DATA. A DSN is a few kilobytes, with at most the returned
// message's headers or a part of its body.
const MaxSize = 1 << 20

// Report is what a returned message says. Recipients and Diagnostic may
// hold addresses: match with them, never store or log them (Reason is safe).
type Report struct {
	Kind Kind
	// Standard is set when the message was an RFC 3464 delivery-status
	// report; else the fallback read a non-standard bounce's text.
	Standard bool
	// Action is the report's action (failed, delayed, delivered, relayed,
	// expanded); empty for a non-standard bounce.
	Action string
	// Status is the enhanced status code, e.g. "5.1.1".
	Status string
	// Diagnostic is the remote server's reply as reported, e.g. "smtp; 550
	// 5.1.1 <x@example.com>: Recipient address rejected: User unknown".
	Diagnostic string
	// Recipients are the failed recipients the report names.
	Recipients []string
	// Notice is the X-Renewal-Notice header of the returned message, when
	// the report includes its header.
	Notice string
}

// Reason says the status in words with no address in it, e.g. "5.1.1 user
// unknown".
func (r Report) Reason() string {
	if r.Status == "" {
		return string(r.Kind)
	}
	return r.Status + " " + StatusWords(r.Status)
}

var (
	statusRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)
	// A reply with an enhanced status code, e.g. "550 5.1.1", "550-5.1.1",
	// "#550 5.1.1"; or the enhanced code alone after a '#' (Exchange).
	replyRE    = regexp.MustCompile(`\b([245]\d\d)[ -]#?([245]\.\d{1,3}\.\d{1,3})\b`)
	enhancedRE = regexp.MustCompile(`(?:^|[\s#(\[])([245]\.\d{1,3}\.\d{1,3})\b`)
	basicRE    = regexp.MustCompile(`(?i)(?:said|error|reply|response|returned)[^0-9\n]{0,40}\b([45]\d\d)\b`)
	addressRE  = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+`)
	bounceSubj = regexp.MustCompile(`(?i)undeliver|delivery status notification|returned (mail|to sender)|mail delivery (failed|system|subsystem)|failure notice|delivery (has )?failed|could not be delivered|delivery failure|non-?delivery|not delivered|delivery (delayed|notification)`)
	delayText  = regexp.MustCompile(`(?i)\bdelayed\b|will (retry|keep trying|continue)|still trying|has not yet been delivered|not been delivered yet|delivery is delayed|temporar(y|ily)`)
	autoSubj   = regexp.MustCompile(`(?i)^\s*(out of (the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|autosvar|abwesenheit|absence|vacation|on leave|away from)|^\s*auto:`)
)

// Parse reads one message that came back to a bounce address and says what
// it is. A multipart/report of report-type delivery-status (RFC 3464) is read
// field by field; failing that, the text of the common non-standard bounces
// (Exchange and Microsoft 365, Gmail, Postfix, Exim) is searched for the
// status. Auto-replies are told apart from bounces. A message that is none
// of these returns an error wrapping ErrUnreadable that says why.
func Parse(r io.Reader) (Report, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(r, MaxSize)))
	if err != nil {
		return Report{}, fmt.Errorf("%w: the message has no readable header (%v): save the whole message, headers included, as .eml", ErrUnreadable, err)
	}
	h := textproto.MIMEHeader(msg.Header)
	mediaType, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	body := decoded(msg.Body, h.Get("Content-Transfer-Encoding"))

	var p parts
	if strings.HasPrefix(mediaType, "multipart/") {
		if err := p.walk(body, params["boundary"], 0); err != nil && len(p.status) == 0 && len(p.text) == 0 {
			return Report{}, fmt.Errorf("%w: its MIME parts cannot be read (%v)", ErrUnreadable, err)
		}
	} else {
		b, _ := io.ReadAll(io.LimitReader(body, MaxSize))
		p.text = append(p.text, b)
	}
	if mediaType == "multipart/report" && len(p.status) == 0 && strings.EqualFold(params["report-type"], "delivery-status") {
		return Report{}, fmt.Errorf("%w: a delivery-status report without its message/delivery-status part", ErrUnreadable)
	}
	for _, st := range p.status {
		rep, ok, err := readStatus(st)
		if err != nil {
			return Report{}, err
		}
		if ok {
			rep.Notice = p.notice
			return rep, nil
		}
	}
	if !looksLikeBounce(msg.Header) {
		if isAutoReply(msg.Header) {
			return Report{Kind: AutoReply}, nil
		}
		return Report{}, fmt.Errorf("%w: neither a delivery-status report nor a bounce by its sender or subject, nor an auto-reply", ErrUnreadable)
	}
	return fallback(msg.Header, p)
}

// parts are what walk collected from a message's MIME tree.
type parts struct {
	status [][]byte // message/delivery-status bodies
	text   [][]byte // text/plain and text/html bodies
	notice string   // X-Renewal-Notice of the returned message
}

// walk reads a multipart body, descending into nested multiparts.
func (p *parts) walk(r io.Reader, boundary string, depth int) error {
	if boundary == "" {
		return errors.New("multipart without a boundary")
	}
	if depth > 5 {
		return errors.New("MIME parts nested too deep")
	}
	mr := multipart.NewReader(r, boundary)
	for n := 0; n < 50; n++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		mediaType, params, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if mediaType == "" {
			mediaType = "text/plain"
		}
		body := decoded(part, part.Header.Get("Content-Transfer-Encoding"))
		switch {
		case strings.HasPrefix(mediaType, "multipart/"):
			if err := p.walk(body, params["boundary"], depth+1); err != nil {
				return err
			}
		case mediaType == "message/delivery-status" || mediaType == "message/global-delivery-status":
			b, _ := io.ReadAll(io.LimitReader(body, MaxSize))
			p.status = append(p.status, b)
		case mediaType == "message/rfc822" || mediaType == "text/rfc822-headers" || mediaType == "message/rfc822-headers" || mediaType == "message/global" || mediaType == "message/global-headers":
			if m, err := mail.ReadMessage(bufio.NewReader(body)); err == nil {
				p.notice = strings.TrimSpace(m.Header.Get("X-Renewal-Notice"))
			}
		case strings.HasPrefix(mediaType, "text/"):
			b, _ := io.ReadAll(io.LimitReader(body, MaxSize))
			p.text = append(p.text, b)
		}
	}
	return errors.New("too many MIME parts")
}

// decoded undoes a part's transfer encoding.
func decoded(r io.Reader, cte string) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &stripSpace{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// stripSpace drops the line breaks of base64 text, which encoding/base64
// skips only as CR and LF: some mailers indent with spaces.
type stripSpace struct{ r io.Reader }

func (s *stripSpace) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		// A read of nothing but spaces is read past, so that the decoder
		// is never handed (0, nil).
		if j > 0 || err != nil || n == 0 {
			return j, err
		}
	}
}

// readStatus reads a message/delivery-status body: the per-message fields,
// then one block of fields per recipient (RFC 3464 section 2.1), each block
// a MIME-style header that net/textproto reads. It picks the recipient
// block that matters most: failed, then delayed, then any other. ok is
// false when no block names an action.
func readStatus(b []byte) (Report, bool, error) {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	if _, err := tr.ReadMIMEHeader(); err != nil && err != io.EOF {
		return Report{}, false, fmt.Errorf("%w: the delivery-status fields cannot be read (%v)", ErrUnreadable, err)
	}
	var best textproto.MIMEHeader
	rank := func(h textproto.MIMEHeader) int {
		switch strings.ToLower(strings.TrimSpace(h.Get("Action"))) {
		case "failed":
			return 3
		case "delayed":
			return 2
		case "":
			return 0
		}
		return 1
	}
	var recipients []string
	for range 100 {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			if a := typedAddress(h.Get("Final-Recipient")); a != "" {
				recipients = append(recipients, a)
			}
			if a := typedAddress(h.Get("Original-Recipient")); a != "" {
				recipients = append(recipients, a)
			}
			if best == nil || rank(h) > rank(best) {
				best = h
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return Report{}, false, fmt.Errorf("%w: a recipient's delivery-status fields cannot be read (%v)", ErrUnreadable, err)
		}
	}
	if best == nil || rank(best) == 0 {
		return Report{}, false, nil
	}
	rep := Report{
		Standard: true, Action: strings.ToLower(strings.TrimSpace(best.Get("Action"))),
		Diagnostic: strings.TrimSpace(best.Get("Diagnostic-Code")), Recipients: recipients,
	}
	// The status may carry a comment: "5.1.1 (bad destination mailbox)".
	if f := strings.Fields(best.Get("Status")); len(f) > 0 && statusRE.MatchString(f[0]) {
		rep.Status = f[0]
	}
	// Exim reports 5.0.0 whatever the remote server said: its reply, when
	// of the same class, says more.
	if s := statusIn(rep.Diagnostic); s != "" && (rep.Status == "" || strings.HasSuffix(rep.Status, ".0.0") && s[0] == rep.Status[0]) {
		rep.Status = s
	}
	switch rep.Action {
	case "failed":
		switch {
		case rep.Status == "" || rep.Status[0] == '2':
			rep.Status, rep.Kind = "5.0.0", Hard // failed, whatever else it says
		case rep.Status[0] == '5':
			rep.Kind = Hard
		default:
			rep.Kind = Soft
		}
	case "delayed":
		if rep.Status == "" || rep.Status[0] != '4' {
			rep.Status = "4.0.0"
		}
		rep.Kind = Soft
	case "delivered", "relayed", "expanded":
		rep.Kind = Delivered
	default:
		return Report{}, false, fmt.Errorf("%w: the delivery-status action %q is none of failed, delayed, delivered, relayed or expanded", ErrUnreadable, rep.Action)
	}
	return rep, true, nil
}

// typedAddress reads "rfc822; name@example.com".
func typedAddress(v string) string {
	_, a, ok := strings.Cut(v, ";")
	if !ok {
		return ""
	}
	a = strings.Trim(strings.TrimSpace(a), "<>")
	if !strings.Contains(a, "@") {
		return ""
	}
	return a
}

// statusIn finds an enhanced status code in a reply text.
func statusIn(s string) string {
	if m := replyRE.FindStringSubmatch(s); m != nil && m[1][0] == m[2][0] {
		return m[2]
	}
	if m := enhancedRE.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

// isAutoReply tells an automatic answer (RFC 3834's Auto-Submitted, and the
// headers and subjects of the common out-of-office replies).
func isAutoReply(h mail.Header) bool {
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && v != "no" {
		return true
	}
	for _, k := range []string{"X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress-Reply"} {
		if h.Get(k) != "" {
			return true
		}
	}
	if p := strings.ToLower(h.Get("Precedence")); p == "auto_reply" {
		return true
	}
	return autoSubj.MatchString(decodeWords(h.Get("Subject")))
}

func decodeWords(s string) string {
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// looksLikeBounce tells a non-standard bounce by its sender (a
// mailer-daemon or postmaster), its subject, or the failed-recipient
// headers of Exim, Gmail and Exchange.
func looksLikeBounce(h mail.Header) bool {
	from := strings.ToLower(h.Get("From"))
	_, ndr := h[textproto.CanonicalMIMEHeaderKey("X-MS-Exchange-Message-Is-Ndr")]
	return ndr || h.Get("X-Failed-Recipients") != "" || strings.Contains(from, "mailer-daemon") ||
		strings.Contains(from, "postmaster") || strings.Contains(from, "microsoftexchange") ||
		bounceSubj.MatchString(decodeWords(h.Get("Subject")))
}

// fallback reads a bounce that is not an RFC 3464 report (looksLikeBounce
// said it is one): its text must hold a status code.
func fallback(h mail.Header, p parts) (Report, error) {
	subject := decodeWords(h.Get("Subject"))
	text := string(bytes.Join(p.text, []byte("\n")))
	text = stripTags(text)
	rep := Report{Notice: p.notice}
	if rep.Notice == "" {
		if i := strings.Index(text, "X-Renewal-Notice:"); i >= 0 {
			line, _, _ := strings.Cut(text[i+len("X-Renewal-Notice:"):], "\n")
			rep.Notice = strings.TrimSpace(line)
		}
	}
	for _, a := range strings.Split(h.Get("X-Failed-Recipients"), ",") {
		if a = strings.TrimSpace(a); strings.Contains(a, "@") {
			rep.Recipients = append(rep.Recipients, a)
		}
	}
	rep.Recipients = append(rep.Recipients, addressRE.FindAllString(text, 20)...)
	// The returned message's own header is no diagnosis: search the text
	// before it.
	diag := text
	for _, cut := range []string{"------ This is a copy of the message", "Original message headers:", "----- Original message -----", "Received: from", "Return-Path:"} {
		if i := strings.Index(diag, cut); i > 0 {
			diag = diag[:i]
		}
	}
	if m := replyRE.FindStringSubmatch(diag); m != nil && m[1][0] == m[2][0] {
		rep.Status, rep.Diagnostic = m[2], lineAround(diag, m[0])
	} else if m := enhancedRE.FindStringSubmatch(diag); m != nil {
		rep.Status, rep.Diagnostic = m[1], lineAround(diag, m[1])
	} else if m := basicRE.FindStringSubmatch(diag); m != nil {
		rep.Status, rep.Diagnostic = m[1][:1]+".0.0", lineAround(diag, m[0])
	}
	delayed := delayText.MatchString(subject) || delayText.MatchString(diag)
	switch {
	case rep.Status == "" && delayed:
		rep.Status, rep.Kind = "4.0.0", Soft
	case rep.Status == "":
		return Report{}, fmt.Errorf("%w: it looks like a bounce but names no delivery status (such as 5.1.1): check it by hand", ErrUnreadable)
	case rep.Status[0] == '5':
		rep.Kind = Hard
	default:
		rep.Kind = Soft
	}
	return rep, nil
}

var tagRE = regexp.MustCompile(`(?s)<style.*?</style>|<[^>]*>`)

// stripTags turns an HTML part (Exchange and Gmail send those) into text
// enough to search for a status code.
func stripTags(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	s = tagRE.ReplaceAllString(s, " ")
	return strings.NewReplacer("&nbsp;", " ", "&lt;", "<", "&gt;", ">", "&amp;", "&", "&#43;", "+").Replace(s)
}

// lineAround returns the line of text that holds needle, trimmed.
func lineAround(text, needle string) string {
	i := strings.Index(text, needle)
	if i < 0 {
		return needle
	}
	start := strings.LastIndexByte(text[:i], '\n') + 1
	end := strings.IndexByte(text[i:], '\n')
	if end < 0 {
		end = len(text) - i
	}
	return strings.TrimSpace(text[start : i+end])
}
