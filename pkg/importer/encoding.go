package importer

import (
	"bufio"
	"bytes"
	"cmp"
	"io"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// The text encodings an import is read in, as Report.Encoding names them.
const (
	EncodingUTF8        = "UTF-8"
	EncodingUTF8BOM     = "UTF-8 with BOM"
	EncodingUTF16LE     = "UTF-16LE"
	EncodingUTF16BE     = "UTF-16BE"
	EncodingWindows1252 = "Windows-1252"
)

// decodeText returns br's text as UTF-8 and a function that tells, once
// the text was read, which encoding it was in. UTF-16 is told by its byte
// order mark, or without one by ASCII text with every other byte zero (what
// Excel's "Unicode Text" and other tools save); a UTF-8 byte order mark is
// dropped. Anything else is UTF-8, unless its first byte that is not ASCII
// does not start a UTF-8 sequence but is a character of Windows-1252: then
// the rest is read as Windows-1252, which agrees with ASCII on everything
// before. A file with UTF-8 text before such a byte stays UTF-8, and its
// rows that are not are rejected (see badEncoding).
func decodeText(br *bufio.Reader) (io.Reader, func() string) {
	head, _ := br.Peek(4)
	switch { // UseBOM: drop the byte order mark if there is one
	case bytes.HasPrefix(head, []byte("\xFF\xFE")), len(head) >= 2 && head[0] != 0 && head[1] == 0:
		return transform.NewReader(br, unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewDecoder()), fixed(EncodingUTF16LE)
	case bytes.HasPrefix(head, []byte("\xFE\xFF")), len(head) >= 2 && head[0] == 0 && head[1] != 0:
		return transform.NewReader(br, unicode.UTF16(unicode.BigEndian, unicode.UseBOM).NewDecoder()), fixed(EncodingUTF16BE)
	case bytes.HasPrefix(head, []byte("\xEF\xBB\xBF")):
		br.Discard(3)
		return br, fixed(EncodingUTF8BOM)
	}
	g := &guess{br: br}
	return g, g.name
}

func fixed(name string) func() string { return func() string { return name } }

// guess reads ASCII through until the first byte that is not, and then
// settles on UTF-8 or Windows-1252 for the rest.
type guess struct {
	br   *bufio.Reader
	rest io.Reader // once settled: br itself for UTF-8, or a Windows-1252 decoder of it
	enc  string    // EncodingWindows1252 once settled on it
}

func (g *guess) name() string { return cmp.Or(g.enc, EncodingUTF8) }

func (g *guess) Read(p []byte) (int, error) {
	if g.rest != nil {
		return g.rest.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := g.br.Peek(1); err != nil { // reads only when nothing is buffered
		return 0, err
	}
	buf, _ := g.br.Peek(min(g.br.Buffered(), len(p)))
	i := 0
	for i < len(buf) && buf[i] < utf8.RuneSelf {
		i++
	}
	if i > 0 {
		n := copy(p, buf[:i])
		g.br.Discard(n)
		return n, nil
	}
	// The first byte that is not ASCII decides.
	seq, _ := g.br.Peek(utf8.UTFMax)
	if r, size := utf8.DecodeRune(seq); (r != utf8.RuneError || size > 1) || !windows1252(string(seq[:1])) {
		g.rest = g.br
	} else {
		g.rest, g.enc = transform.NewReader(g.br, charmap.Windows1252.NewDecoder()), EncodingWindows1252
	}
	return g.Read(p)
}
