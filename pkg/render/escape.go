package render

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The escapers that html/template inserts into the actions of an HTML
// template (escape.go's funcMap), re-implemented for the compiled fast path
// (compile.go) for values of plain content type: a string, int, bool or
// subscription.Date is never template.HTML, template.URL and so on. Each is a
// copy of the standard library's code for that case (html/template's html.go
// and url.go, Go 1.26) and must give the same bytes; the differential tests
// check that they do.

// filterFailsafe is html/template's replacement for a value it refuses.
const filterFailsafe = "ZgotmplZ"

// htmlReplacementTable is html/template's table for text, RCDATA and quoted
// attribute values.
var htmlReplacementTable = []string{
	0:    "\uFFFD",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'>':  "&gt;",
}

// htmlNospaceReplacementTable is html/template's table for unquoted
// attribute values.
var htmlNospaceReplacementTable = []string{
	0:    "&#xfffd;",
	'\t': "&#9;",
	'\n': "&#10;",
	'\v': "&#11;",
	'\f': "&#12;",
	'\r': "&#13;",
	' ':  "&#32;",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'=':  "&#61;",
	'>':  "&gt;",
	'`':  "&#96;",
}

// appendHTMLEscaped appends s escaped as html/template's htmlEscaper,
// attrEscaper and rcdataEscaper all escape plain content:
// htmlReplacer(s, htmlReplacementTable, true).
//
// htmlReplacer decodes runes, but with badRunes true only runes in the
// table, all ASCII, are replaced; an ASCII byte is always a rune of its own
// in UTF-8 decoding (valid or not), so a byte loop gives the same result.
func appendHTMLEscaped[S string | []byte](dst []byte, s S) []byte {
	written := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if int(c) >= len(htmlReplacementTable) {
			continue
		}
		if repl := htmlReplacementTable[c]; repl != "" {
			dst = append(dst, s[written:i]...)
			dst = append(dst, repl...)
			written = i + 1
		}
	}
	return append(dst, s[written:]...)
}

// htmlEscapeString is appendHTMLEscaped returning a string, as htmlEscaper
// returns it (s itself when nothing needs escaping).
func htmlEscapeString(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; int(c) < len(htmlReplacementTable) && htmlReplacementTable[c] != "" {
			return string(appendHTMLEscaped(make([]byte, 0, len(s)+16), s))
		}
	}
	return s
}

// nospaceEscape is htmlNospaceEscaper for plain content.
func nospaceEscape(s string) string {
	if s == "" {
		return filterFailsafe
	}
	return htmlReplacerStrict(s, htmlNospaceReplacementTable)
}

// htmlReplacerStrict is html/template's htmlReplacer with badRunes false.
func htmlReplacerStrict(s string, replacementTable []string) string {
	written, b := 0, new(strings.Builder)
	r, w := rune(0), 0
	for i := 0; i < len(s); i += w {
		r, w = utf8.DecodeRuneInString(s[i:])
		if int(r) < len(replacementTable) {
			if repl := replacementTable[r]; len(repl) != 0 {
				if written == 0 {
					b.Grow(len(s))
				}
				b.WriteString(s[written:i])
				b.WriteString(repl)
				written = i + w
			}
		} else if 0xfdd0 <= r && r <= 0xfdef || 0xfff0 <= r && r <= 0xffff {
			if written == 0 {
				b.Grow(len(s))
			}
			fmt.Fprintf(b, "%s&#x%x;", s[written:i], r)
			written = i + w
		}
	}
	if written == 0 {
		return s
	}
	b.WriteString(s[written:])
	return b.String()
}

// urlFilter is html/template's urlFilter for plain content.
func urlFilter(s string) string {
	if !isSafeURL(s) {
		return "#" + filterFailsafe
	}
	return s
}

// isSafeURL is true if s is a relative URL or if URL has a protocol in
// (http, https, mailto).
func isSafeURL(s string) bool {
	if protocol, _, ok := strings.Cut(s, ":"); ok && !strings.Contains(protocol, "/") {
		if !strings.EqualFold(protocol, "http") && !strings.EqualFold(protocol, "https") && !strings.EqualFold(protocol, "mailto") {
			return false
		}
	}
	return true
}

// urlProcess is html/template's urlProcessor for plain content: urlNormalizer
// when norm is true, urlEscaper when it is false.
func urlProcess(norm bool, s string) string {
	if i := urlFirstChange(norm, s); i < 0 {
		return s
	}
	return string(appendURLProcessed(make([]byte, 0, len(s)+16), norm, s))
}

// urlFirstChange returns the index of the first byte of s that
// processURLOnto would encode, or -1.
func urlFirstChange(norm bool, s string) int {
	for i := 0; i < len(s); i++ {
		if urlEncodes(norm, s, i) {
			return i
		}
	}
	return -1
}

// urlEncodes reports whether html/template's processURLOnto percent-encodes
// s[i].
func urlEncodes(norm bool, s string, i int) bool {
	c := s[i]
	switch c {
	case '!', '#', '$', '&', '*', '+', ',', '/', ':', ';', '=', '?', '@', '[', ']':
		return !norm
	case '-', '.', '_', '~':
		return false
	case '%':
		return !(norm && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]))
	default:
		return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9')
	}
}

// appendURLProcessed appends what processURLOnto writes for s.
func appendURLProcessed(dst []byte, norm bool, s string) []byte {
	const hex = "0123456789abcdef"
	written := 0
	for i := 0; i < len(s); i++ {
		if !urlEncodes(norm, s, i) {
			continue
		}
		c := s[i]
		dst = append(dst, s[written:i]...)
		dst = append(dst, '%', hex[c>>4], hex[c&15]) // fmt's %%%02x
		written = i + 1
	}
	return append(dst, s[written:]...)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
