package render_test

import (
	"syscall"
	"testing"
	"time"

	"renewals/pkg/render"
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
	cpu := processCPU()
	for b.Loop() {
		if _, err := r.Render(s, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU returns the CPU time (user and system) the test process used so
// far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
