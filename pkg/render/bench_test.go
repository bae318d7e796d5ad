package render_test

import (
	"testing"

	"renewals/pkg/render"
	"renewals/templates"
)

// BenchmarkRender renders a 30-day notice, as the notifier does per email.
func BenchmarkRender(b *testing.B) {
	r, err := render.New(templates.FS, reseller)
	if err != nil {
		b.Fatal(err)
	}
	s := sub("en-GB")
	n := notice(s, 30, 30)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render(s, n); err != nil {
			b.Fatal(err)
		}
	}
}
