package mailer

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// BenchmarkSMTPSink sends notices of a rendered notice's size through an
// SMTPSender with N workers (one connection each) into Postfix's smtp-sink,
// from many goroutines, and reports the throughput and the CPU time an
// email of this process (composing and SMTP) and of smtp-sink. smtp-sink's
// CPU is read from /proc/<pid>/stat in clock ticks of 10ms: give it a few
// thousand messages, e.g. -benchtime=20000x.
func BenchmarkSMTPSink(b *testing.B) {
	addr, pid := testenv.SMTPSink(b)
	for _, workers := range []int{16, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchSink(b, addr, pid, workers) })
	}
}

func benchSink(b *testing.B, addr string, pid, workers int) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	s, err := NewSMTP(SMTPConfig{Host: host, Port: p, TLS: TLSNone, Workers: workers}, "renewals@reseller.example", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	base := Message{
		Key:     subscription.NoticeKey{EndDate: subscription.MustDate("2027-03-31"), Milestone: 90},
		To:      "cm@customer.example",
		ToName:  "Carla Manager",
		Subject: "Your Suite Pro subscription ends on 31 March 2027",
		Text:    strings.Repeat("Your Suite Pro subscription ends on 31 January 2031, in 30 days.\n\n", 30),
		HTML:    strings.Repeat("<p>Your <strong>Suite Pro</strong> subscription ends on 31 January 2031.</p>\n", 30),
	}
	// Open the connections before the clock starts.
	warm := make(chan error, workers)
	for i := range workers {
		go func() {
			m := base
			m.Key.SubscriptionID = fmt.Sprintf("warm%d", i)
			warm <- s.Send(b.Context(), m)
		}()
	}
	for range workers {
		if err := <-warm; err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(2 * workers) // 2×workers×GOMAXPROCS senders
	b.ResetTimer()
	sinkStart, ownStart := testenv.ProcessCPU(pid), testenv.SelfCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := base
			m.Key.SubscriptionID = "b" + strconv.FormatInt(n.Add(1), 10)
			if err := s.Send(b.Context(), m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	sink, own := testenv.ProcessCPU(pid)-sinkStart, testenv.SelfCPU()-ownStart
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(own.Microseconds())/float64(b.N), "own-cpu-µs/msg")
	b.ReportMetric(float64(sink.Microseconds())/float64(b.N), "sink-cpu-µs/msg")
}
