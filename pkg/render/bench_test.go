package render_test

import (
	"testing"

	"renewals/pkg/render"
	"renewals/pkg/testenv"
	"renewals/templates"
)

// BenchmarkRender renders a 30-day notice, as the notifier does per email.
// Besides ns/op it reports the process's CPU per render (cpu-ns/op: the
// garbage collector's work included), steadier on a busy machine.
func BenchmarkRender(b *testing.B) {
	r, err := render.New(templates.FS, reseller)
	if err != nil {
		b.Fatal(err)
	}
	s := sub("en-GB")
	n := notice(s, 30, 30)
	b.ReportAllocs()
	cpu := testenv.SelfCPU()
	for b.Loop() {
		if _, err := r.Render(s, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(testenv.SelfCPU()-cpu)/float64(b.N), "cpu-ns/op")
}
