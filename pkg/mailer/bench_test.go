package mailer_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"renewals/pkg/mailer"
	"renewals/pkg/testenv"
)

// BenchmarkSMTPPool sends through a pool of 4 connections to the in-process
// server from many goroutines and reports the throughput.
func BenchmarkSMTPPool(b *testing.B) {
	srv := testenv.SMTP(b)
	s := newSMTP(b, srv, "&workers=4")
	var n atomic.Int64
	b.SetParallelism(4) // 4×GOMAXPROCS senders compete for the 4 connections
	b.ResetTimer()
	cpu := testenv.SelfCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Send(b.Context(), sample(fmt.Sprintf("b%d", n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCPU(b, cpu) // the in-process server's share included
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	srv.WaitFor(b.N, 10*time.Second)
	if c := srv.Connections(); c > 4 {
		b.Errorf("%d connections for 4 workers", c)
	}
}

// BenchmarkCompose writes a notice of a rendered notice's size.
func BenchmarkCompose(b *testing.B) {
	m := sample("110001234567")
	m.Text = strings.Repeat("Your Suite Pro subscription ends on 31 January 2031, in 30 days.\n\n", 30)
	m.HTML = strings.Repeat("<p>Your <strong>Suite Pro</strong> subscription ends on 31 January 2031.</p>\n", 30)
	b.ReportAllocs()
	cpu := testenv.SelfCPU()
	for b.Loop() {
		if _, err := mailer.Compose(from, m, fixedNow); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// reportCPU reports the process's CPU time since start per operation.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(testenv.SelfCPU()-start)/float64(b.N), "cpu-ns/op")
}
