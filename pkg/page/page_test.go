package page

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	key := []string{"2", "-5", "200000000003"}
	got, err := Decode(Encode(key...), 3)
	if err != nil || !slices.Equal(got, key) {
		t.Fatalf("Decode(Encode(%q)) = %q, %v", key, got, err)
	}
	for _, c := range []string{"%%", Encode("a", "b"), Encode("a", "b", "c", "d")} {
		if _, err := Decode(c, 3); !errors.Is(err, ErrCursor) {
			t.Errorf("Decode(%q): %v, want ErrCursor", c, err)
		}
	}
}

func TestLimit(t *testing.T) {
	for v, want := range map[string]int{"": 0, "1": 1, "10000": 10_000} {
		if n, err := Limit(url.Values{"limit": {v}}); n != want || err != nil {
			t.Errorf("limit %q: %d, %v", v, n, err)
		}
	}
	for _, v := range []string{"0", "-1", "10001", "ten"} {
		if _, err := Limit(url.Values{"limit": {v}}); err == nil {
			t.Errorf("limit %q accepted", v)
		}
	}
}

func TestJSONIsOneValidDocument(t *testing.T) {
	for _, rows := range [][]any{nil, {map[string]int{"a": 1}}, {"<b>", 2, []int{3}}} {
		var b bytes.Buffer
		j := NewJSON(&b)
		if err := j.Open("rows", Member{"count", len(rows)}); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := j.Row(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Close(Member{"next_cursor", "x"}); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Count int               `json:"count"`
			Rows  []json.RawMessage `json:"rows"`
			Next  string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(b.Bytes(), &got); err != nil || got.Count != len(rows) || len(got.Rows) != len(rows) || got.Next != "x" || got.Rows == nil {
			t.Errorf("%d rows wrote %q: %+v, %v", len(rows), b.String(), got, err)
		}
		if len(rows) == 3 && !bytes.Contains(b.Bytes(), []byte(`"<b>"`)) {
			t.Errorf("HTML was escaped: %s", b.String())
		}
	}
}
