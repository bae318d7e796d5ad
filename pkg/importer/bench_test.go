package importer

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

// discardStore stores nothing and reports every row created.
type discardStore struct{}

func (discardStore) Upsert(_ context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	res := make([]subscription.UpsertResult, len(subs))
	for i := range res {
		res[i].Change = subscription.Created
	}
	return res, nil
}

const benchHeader = "subscription_id,end_date,customer_account,customer_name,product,seats,seats_assigned,access_model,term,start_date,status,cm_name,cm_email,cm_phone,pa_name,pa_email,sa_emails,timezone,locale,reseller_rep\n"

// benchRow writes a realistic row of every field, about 330 bytes.
func benchRow(b []byte, i int) []byte {
	return fmt.Appendf(b, "%012d,2027-%02d-%02d,ACC-%d,\"Customer %d, Ltd\",CAD Suite Professional,%d,%d,multi-user,12 months,2026-%02d-01,active,"+
		"Contract Manager %d,cm%d@customer.example,+44 20 7946 %04d,Primary Admin %d,pa%d@customer.example,sa%d@customer.example;sb%d@customer.example,"+
		"Europe/London,en-GB,Rep %d\n",
		110000000000+i, i%12+1, i%28+1, i, i, 10+i%90, 5+i%5, i%12+1, i, i, i%10000, i, i, i, i, i%50)
}

// rowSource generates a CSV of n rows as it is read, so that a million-row
// import can be measured without the file in memory.
type rowSource struct {
	n, i int
	buf  []byte
}

func newRowSource(n int) *rowSource { return &rowSource{n: n, buf: []byte(benchHeader)} }

func (s *rowSource) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && s.i < s.n {
		s.buf = benchRow(s.buf, s.i)
		s.i++
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	return n, nil
}

// BenchmarkImportCSV imports 100,000 generated rows of every field per
// iteration into a store that discards them.
func BenchmarkImportCSV(b *testing.B) {
	const rows = 100000
	var sb strings.Builder
	sb.WriteString(benchHeader)
	var row []byte
	for i := range rows {
		row = benchRow(row[:0], i)
		sb.Write(row)
	}
	data := sb.String()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		rep, err := Import(context.Background(), strings.NewReader(data), Options{Store: discardStore{}})
		if err != nil || rep.Created != rows {
			b.Fatalf("report %+v, err %v", rep, err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/time.Since(start).Seconds(), "rows/s")
}

// TestImportMillionRowsMemory checks that a million-row import keeps its
// live heap small: the rows stream, and what stays is the map of seen ids.
func TestImportMillionRowsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("imports a million rows")
	}
	const rows = 1000000
	var live uint64
	rep, err := Import(context.Background(), newRowSource(rows), Options{
		Store: discardStore{},
		Progress: func(n int) {
			if n == rows { // the end: every id is in the map
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				live = ms.HeapAlloc
			}
		},
	})
	if err != nil || rep.Created != rows || len(rep.Duplicates) != 0 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	t.Logf("live heap at the end of a %d-row import: %d MB", rows, live>>20)
	if live > 100<<20 {
		t.Errorf("live heap %d MB, want under 100 MB", live>>20)
	}
}
