package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// repeatReader yields n bytes of b over and over, so that a test can feed a
// 100 MB element without holding it.
type repeatReader struct {
	b []byte
	n int64
	i int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	for k := 0; k < len(p); {
		c := copy(p[k:], r.b[r.i:])
		r.i = (r.i + c) % len(r.b)
		k += c
	}
	r.n -= int64(len(p))
	return len(p), nil
}

func validJSONRow(id int) string {
	return fmt.Sprintf(`{"subscription_id":"%d","end_date":"2027-05-31"}`, id)
}

// A JSON array with one element of 100 MB: the element is rejected with
// its line, the rows around it are stored, and the import allocates a
// bounded amount, not the element's size (it took 100 MB and more before).
func TestImportHugeJSONElementStaysFlat(t *testing.T) {
	const size = 100 << 20
	in := io.MultiReader(
		strings.NewReader("[\n"+validJSONRow(1)+",\n"+validJSONRow(2)+",\n"+validJSONRow(3)+",\n"),
		strings.NewReader(`{"subscription_id":"4","end_date":"2027-05-31","customer_name":"`),
		&repeatReader{b: []byte(`abc \"}]{[ `), n: size},
		strings.NewReader("\"},\n"+validJSONRow(5)+",\n"+validJSONRow(6)+"\n]\n"),
	)
	st := &memStore{}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rep, err := Import(context.Background(), in, Options{Store: st})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MB element: %.1f MB allocated in all, heap in use %.1f MB before, %.1f MB after",
		size>>20, float64(alloc)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
	if alloc > 32<<20 {
		t.Errorf("the import allocated %d MB for a %d MB element: it is buffered, not capped", alloc>>20, size>>20)
	}
	if rep.Rows != 6 || rep.Created != 5 || rep.Rejected != 1 || len(rep.Rejections) != 1 {
		t.Fatalf("report %+v: want 6 rows, 5 created, 1 rejected", rep)
	}
	if x := rep.Rejections[0]; x.Line != 5 || x.Field != "" || !strings.Contains(x.Reason, "longer than the limit of 65536 bytes (64 KiB)") {
		t.Errorf("rejection %+v: want line 5, over the limit", x)
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

// Elements too long to decode are passed over whatever they are, and the
// reading goes on with the right lines; what follows them is still checked.
func TestReaderSkipsLongJSONElements(t *testing.T) {
	big := strings.Repeat("x", 3*jsonWindow)
	nl := strings.Repeat("\n", 3*jsonWindow) // newlines inside the element, between its fields
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
		{"escapes and brackets in strings", "[{\"a\":\"" + strings.Repeat(`\"}],{[\\`, jsonWindow) + "\",\"b\":[{}]},\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"nested", "[{\"a\":[" + strings.Repeat(`{"b":[1,2]},`, jsonWindow/4) + "0]},\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"string", "[\"" + big + "\",\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"number", "[" + strings.Repeat("1", 3*jsonWindow) + " ,\n" + validJSONRow(2) + "]", []string{"1:long", "2:2"}, ""},
		{"white space before a short element", "[" + validJSONRow(1) + "," + strings.Repeat(" ", 3*jsonWindow) + validJSONRow(3) + "]", []string{"1:1", "1:3"}, ""},
		{"newlines before a short element", "[" + validJSONRow(1) + "," + nl + validJSONRow(3) + "]", []string{"1:1", fmt.Sprintf("%d:3", 1+len(nl))}, ""},
		{"white space before a bad short element", "[" + validJSONRow(1) + "," + strings.Repeat(" ", 3*jsonWindow) + "{\"a\" 1},\n" + validJSONRow(3) + "]", []string{"1:1", "1:bad", "2:3"}, ""},
		{"white space before the closing bracket", "[" + validJSONRow(1) + ",\n" + strings.Repeat(" ", 3*jsonWindow) + "]", []string{"1:1"}, "line 2: invalid JSON"},
		{"cut short", "[" + validJSONRow(1) + ",\n{\"a\":\"" + big, []string{"1:1"}, "line 2: the JSON array ends early"},
		{"trailing comma", "[" + validJSONRow(1) + ",\n{\"a\":\"" + big + "\"},\n]", []string{"1:1", "2:long"}, "line 2: invalid JSON"},
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
