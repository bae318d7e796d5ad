package kvstore

import "testing"

// The memory accounts for sequences only up to the first one it has not
// seen written: spans that continue it move it on, a gap holds it.
func TestSeenAdvance(t *testing.T) {
	m := newSeen()
	m.through = 10
	m.addSpans([]uint64{13, 14, 15})
	if m.through != 10 {
		t.Fatalf("through %d after a gap at 11-12, want 10", m.through)
	}
	m.addSpans([]uint64{12})
	if m.through != 10 {
		t.Fatalf("through %d with 11 not written, want 10", m.through)
	}
	m.addSpans([]uint64{11})
	if m.through != 15 {
		t.Fatalf("through %d once 11 is written, want 15", m.through)
	}
	m.addSpans([]uint64{5, 16, 18})
	if m.through != 16 || len(m.spans) != 1 || m.spans[0] != (run{18, 18}) {
		t.Fatalf("through %d, spans %v; want 16 and [18]", m.through, m.spans)
	}
}
