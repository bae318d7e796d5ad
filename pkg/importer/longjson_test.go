package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

func validJSONRow(id int) string {
	return fmt.Sprintf(`{"subscription_id":"%d","end_date":"2027-05-31"}`, id)
}

// A JSON array with one element of 512 KiB, past the row limit and inside
// the element cap: the element is rejected with its line and its id, and
// the rows around it are stored.
func TestImportHugeJSONElement(t *testing.T) {
	in := "[\n" + validJSONRow(1) + ",\n" + validJSONRow(2) + ",\n" + validJSONRow(3) + ",\n" +
		`{"subscription_id":"4","end_date":"2027-05-31","customer_name":"` + strings.Repeat(`abc \"}]{[ `, 512<<10/11) +
		"\"},\n" + validJSONRow(5) + ",\n" + validJSONRow(6) + "\n]\n"
	st := &memStore{}
	rep, err := Import(context.Background(), strings.NewReader(in), Options{Store: st})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if rep.Rows != 6 || rep.Created != 5 || rep.Rejected != 1 || len(rep.Rejections) != 1 {
		t.Fatalf("report %+v: want 6 rows, 5 created, 1 rejected", rep)
	}
	if x := rep.Rejections[0]; x.Line != 5 || x.Field != "" || x.SubscriptionID != "4" || !strings.Contains(x.Reason, "longer than the limit of 65536 bytes (64 KiB)") {
		t.Errorf("rejection %+v: want line 5, subscription 4, over the limit", x)
	}
	for _, id := range []string{"1", "2", "3", "5", "6"} {
		if _, ok := st.subs[id]; !ok {
			t.Errorf("subscription %s not stored", id)
		}
	}
	if _, ok := st.subs["4"]; ok {
		t.Error("the element over the limit was stored")
	}
}

// An element of 32 MB, with no limit on the body, costs a few MB: the
// decoder reads no more than MaxElementBytes of it, and the import ends
// there with the element's line and what to do. The rows before it are
// stored, the row after it is not read.
func TestImportJSONElementOverCap(t *testing.T) {
	in := "[\n" + validJSONRow(1) + ",\n" + validJSONRow(2) + ",\n" +
		"{\n  \"subscription_id\": \"3\",\n  \"customer_name\": \"" + strings.Repeat("x", 32<<20) + "\"\n},\n" + validJSONRow(4) + "\n]\n"
	st := &memStore{}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rep, err := Import(context.Background(), strings.NewReader(in), Options{Store: st})
	runtime.ReadMemStats(&after)
	fe, ok := errors.AsType[*FileError](err)
	if !ok || !errors.Is(err, ErrInvalidFile) {
		t.Fatalf("err = %v, want a *FileError", err)
	}
	if fe.Line != 4 || !strings.Contains(fe.Reason, "longer than 1048576 bytes (1 MiB)") || !strings.Contains(fe.Reason, "split it into one object per subscription or shorten its fields") {
		t.Errorf("error %q: want line 4, the cap and what to do", err)
	}
	t.Logf("allocated %.1f MB", float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("the import allocated %d MB for an element of 32 MB", alloc>>20)
	}
	if rep.Rows != 2 || rep.Created != 2 || len(st.subs) != 2 || st.subs["1"].ID == "" || st.subs["2"].ID == "" {
		t.Errorf("report %+v, stored %d: want rows 1 and 2 stored and nothing after", rep, len(st.subs))
	}
}

// White space past the cap before an element, or before the closing
// bracket, ends the reading the same way: the decoder would hold it all.
func TestReaderJSONSpaceOverCap(t *testing.T) {
	for _, in := range []string{
		"[" + validJSONRow(1) + ",\n" + strings.Repeat(" ", 2*MaxElementBytes) + validJSONRow(2) + "]",
		"[" + validJSONRow(1) + "\n" + strings.Repeat(" ", 2*MaxElementBytes) + "]",
		strings.Repeat("\n", 2*MaxElementBytes) + "[]",
	} {
		rd, err := NewReader(strings.NewReader(in), FormatJSON)
		for err == nil {
			_, err = rd.Next()
		}
		if !strings.Contains(fmt.Sprint(err), "longer than 1048576 bytes") || !errors.Is(err, ErrInvalidFile) {
			t.Errorf("%.12q: reading ended with %v, want the cap", in, err)
		}
	}
}

// The body's limit still bounds the memory when it is below the cap: a
// 32 MB element behind a limit of 512 KiB costs a few MB, and the rows
// before it are stored.
func TestImportLongJSONElementOverBodyLimit(t *testing.T) {
	in := "[\n" + validJSONRow(1) + ",\n" + `{"subscription_id":"2","customer_name":"` + strings.Repeat("x", 32<<20) + "\"}]"
	body := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(in)), 512<<10)
	st := &memStore{}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rep, err := Import(context.Background(), body, Options{Store: st})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("the import allocated %d MB behind a limit of 512 KiB", alloc>>20)
	}
	if rep.Created != 1 || len(st.subs) != 1 {
		t.Errorf("report %+v: want the row before the element stored", rep)
	}
}

// A syntax error inside a pretty-printed element is reported on its own
// line, not on the line where the element starts, wherever the element
// stands in the file and however long it is.
func TestReaderJSONSyntaxErrorLines(t *testing.T) {
	// The first element takes lines 1-5; the second starts on line 6, and
	// broken on line 9.
	head := "[\n  {\n    \"subscription_id\": \"1\",\n    \"end_date\": \"2027-05-31\"\n  },\n"
	elem := func(broken string) string {
		return "  {\n    \"subscription_id\": \"2\",\n    \"end_date\": \"2027-05-31\",\n" + broken + "\n  }\n]\n"
	}
	long := "    \"customer_name\": \"" + strings.Repeat("x", 3*MaxRowBytes) + "\",\n" // one line more
	for _, tc := range []struct {
		name, in string
		line     int
	}{
		{"bare word", head + elem(`    "seats": tru`), 9},
		{"missing comma", head + elem("    \"seats\": 3\n    \"product\": \"x\""), 10},
		{"comma before the brace", head + elem(`    "seats": 3,`), 10},
		{"newline in a string", head + elem("    \"product\": \"a\nb\""), 9},
		{"deep inside", head + elem("    \"notes\": [\n      {\"a\": [1, 2,\n        3 4]}\n    ]"), 11},
		{"after a long field", head + "  {\n" + long + "    \"subscription_id\": \"2\",\n\n    \"seats\": 3 3\n  }\n]", 10},
		{"after many lines", head + strings.Repeat("\n", 10000) + elem(`    "seats": -`), 10009},
		{"at the element's start", head + "  {\n\n  ]\n]", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(tc.in), FormatJSON)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := rd.Next(); err != nil || rec.Line != 2 || rec.Fields["subscription_id"] != "1" {
				t.Fatalf("first element: line %d, %v", rec.Line, err)
			}
			_, err = rd.Next()
			fe, ok := errors.AsType[*FileError](err)
			if !ok || fe.Line != tc.line || !strings.Contains(fe.Reason, "invalid JSON (invalid character") || !strings.Contains(fe.Reason, fmt.Sprintf("from line %d on", tc.line)) {
				t.Errorf("err = %v, want invalid JSON on line %d", err, tc.line)
			}
		})
	}
}

// Elements over the limit are rejected whatever they are, and the reading
// goes on with the right lines; what follows them is still checked.
func TestReaderLongJSONElements(t *testing.T) {
	big := strings.Repeat("x", 3*MaxRowBytes)
	nl := strings.Repeat("\n", 3*MaxRowBytes) // newlines inside the element, between its fields
	for _, tc := range []struct {
		name, in string
		want     []string // per record: "line:id" or "line:long"
		err      string   // the error that ends the reading, "" for io.EOF
	}{
		{"object", "[" + validJSONRow(1) + ",\n{\"a\":\"" + big + "\"},\n" + validJSONRow(3) + "]", []string{"1:1", "2:long", "3:3"}, ""},
		{"first", "[\n\n{\"a\":\"" + big + "\"}," + validJSONRow(3) + "]", []string{"3:long", "3:3"}, ""},
		{"last", "[" + validJSONRow(1) + ",{\"a\":\"" + big + "\"}\n]", []string{"1:1", "1:long"}, ""},
		{"newlines inside", "[" + validJSONRow(1) + ",\n{" + nl + "\"a\":1},\n" + validJSONRow(3) + "]", []string{"1:1", "2:long", fmt.Sprintf("%d:3", 3+len(nl))}, ""},
		{"newlines after the comma", "[" + validJSONRow(1) + "," + nl + "{\"a\":\"" + big + "\"},\n" + validJSONRow(3) + "]", []string{"1:1", fmt.Sprintf("%d:long", 1+len(nl)), fmt.Sprintf("%d:3", 2+len(nl))}, ""},
		{"escapes and brackets in strings", "[{\"a\":\"" + strings.Repeat(`\"}],{[\\`, MaxRowBytes) + "\",\"b\":[{}]},\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"nested", "[{\"a\":[" + strings.Repeat(`{"b":[1,2]},`, MaxRowBytes/4) + "0]},\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"string", "[\"" + big + "\",\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"number", "[" + strings.Repeat("1", 3*MaxRowBytes) + " ,\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"white space before a short element", "[" + validJSONRow(1) + "," + strings.Repeat(" ", 3*MaxRowBytes) + validJSONRow(3) + "]", []string{"1:1", "1:3"}, ""},
		{"newlines before a short element", "[" + validJSONRow(1) + "," + nl + validJSONRow(3) + "]", []string{"1:1", fmt.Sprintf("%d:3", 1+len(nl))}, ""},
		{"white space before the closing bracket", "[" + validJSONRow(1) + ",\n" + strings.Repeat(" ", 3*MaxRowBytes) + "]", []string{"1:1"}, "line 2: invalid JSON"},
		{"cut short", "[" + validJSONRow(1) + ",\n{\"a\":\"" + big, []string{"1:1"}, "line 2: the JSON array ends early"},
		{"trailing comma", "[" + validJSONRow(1) + ",\n{\"a\":\"" + big + "\"},\n]", []string{"1:1", "2:long"}, "line 3: invalid JSON"},
		{"broken after", "[{\"a\":\"" + big + "\"}\n{}]", []string{"1:long"}, "line 2: invalid JSON"},
		{"more after the array", "[{\"a\":\"" + big + "\"}]\n[]", []string{"1:long"}, "line 2: there is more after the JSON array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(tc.in), FormatJSON)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				rec, err := rd.Next()
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					if msg := fmt.Sprint(err); (tc.err == "") != (err == nil) || tc.err != "" && !strings.Contains(msg, tc.err) {
						t.Errorf("reading ended with %v, want %q", err, tc.err)
					}
					if err != nil && !errors.Is(err, ErrInvalidFile) {
						t.Errorf("error %v is not ErrInvalidFile", err)
					}
					break
				}
				what := rec.Fields["subscription_id"]
				if len(rec.Problems) > 0 && strings.Contains(rec.Problems[0].Reason, "not a JSON object") {
					what = "bad"
				} else if len(rec.Problems) > 0 {
					what = "long"
					if !rec.Partial || !strings.Contains(rec.Problems[0].Reason, "longer than the limit") {
						t.Errorf("line %d: problems %+v", rec.Line, rec.Problems)
					}
				}
				got = append(got, fmt.Sprintf("%d:%s", rec.Line, what))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("records %v, want %v", got, tc.want)
			}
		})
	}
}

// Each element's line is the line of its opening brace, whatever white space
// and newlines stand around and inside the elements, short or long.
func TestReaderJSONLines(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	space := func() string {
		return strings.Repeat(" \n\t\r\n"[rnd.IntN(5):], rnd.IntN(3)) + strings.Repeat("\n", rnd.IntN(2)*rnd.IntN(5000))
	}
	var in strings.Builder
	var want []int
	in.WriteString("[")
	lines := 1
	for i := range 1000 {
		before := space()
		if i > 0 {
			before += "," + space()
		}
		lines += strings.Count(before, "\n")
		want = append(want, lines)
		elem := fmt.Sprintf(`{"subscription_id":%s"%d",%s"customer_name":"%s"}`, space(), i, space(), strings.Repeat("x", rnd.IntN(2)*rnd.IntN(8)/7*rnd.IntN(3*MaxRowBytes)))
		in.WriteString(before + elem)
		lines += strings.Count(elem, "\n")
	}
	in.WriteString(space() + "]")
	rd, err := NewReader(strings.NewReader(in.String()), FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range want {
		rec, err := rd.Next()
		if err != nil {
			t.Fatalf("element %d: %v", i, err)
		}
		if rec.Line != line {
			t.Fatalf("element %d: line %d, want %d", i, rec.Line, line)
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("after the last element: %v, want io.EOF", err)
	}
}
