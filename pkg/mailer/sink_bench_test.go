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
// SMTPSender with 16 workers into Postfix's smtp-sink, from 64 goroutines,
// and reports the throughput and the CPU time an email of this process
// (composing and SMTP) and of smtp-sink. smtp-sink's CPU is read from
// /proc/<pid>/stat in clock ticks of 10ms: give it a few thousand
// messages, e.g. -benchtime=20000x. The sub-benchmarks send with
// message-to-message pipelining (a message's data written with the next
// one's envelope) off and on, on one smtp-sink.
func BenchmarkSMTPSink(b *testing.B) {
	addr, pid := testenv.SMTPSink(b)
	for _, chain := range []bool{false, true} {
		b.Run(fmt.Sprintf("chain=%v", chain), func(b *testing.B) { benchSink(b, addr, pid, chain) })
	}
}

func benchSink(b *testing.B, addr string, pid int, chain bool) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	s, err := NewSMTP(SMTPConfig{Host: host, Port: p, TLS: TLSNone, Workers: 16}, "renewals@reseller.example", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.chain = chain // before the first Send: the workers read it after a job
	base := Message{
		Key:     subscription.NoticeKey{EndDate: subscription.MustDate("2027-03-31"), Milestone: 90},
		To:      "cm@customer.example",
		ToName:  "Carla Manager",
		Subject: "Your Suite Pro subscription ends on 31 March 2027",
		Text:    strings.Repeat("Your Suite Pro subscription ends on 31 January 2031, in 30 days.\n\n", 30),
		HTML:    strings.Repeat("<p>Your <strong>Suite Pro</strong> subscription ends on 31 January 2031.</p>\n", 30),
	}
	// Open the 16 connections before the clock starts.
	warm := make(chan error, 16)
	for i := range 16 {
		go func() {
			m := base
			m.Key.SubscriptionID = fmt.Sprintf("warm%d", i)
			warm <- s.Send(b.Context(), m)
		}()
	}
	for range 16 {
		if err := <-warm; err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(32) // 32×GOMAXPROCS senders for 16 workers
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
	b.ReportMetric(float64(s.pipelined.Load())/float64(b.N), "pipelined/msg")
}
