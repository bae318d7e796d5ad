package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"
)

func check(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendString([]byte("x"), s); !bytes.Equal(got[1:], want) {
		t.Fatalf("AppendString(%q) = %s, want %s", s, got[1:], want)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "a\"b\\c<d>e&f", "\x00\x01\x1f\b\f\n\r\t\x7f", "\u2028\u2029", "é 日本 🙂", "\xff\xfe\xed\xa0\x80", "end\xc3"} {
		check(t, s)
	}
	for c := range 256 {
		check(t, string([]byte{'a', byte(c), 'b'}))
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("a\"b\\c<d>e&f\x00\u2028\xff")
	f.Fuzz(check)
}
