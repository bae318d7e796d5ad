package mailer

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
	addr, pid := startSMTPSink(b)
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
	sinkStart, ownStart := procCPU(pid), selfCPU()
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
	sink, own := procCPU(pid)-sinkStart, selfCPU()-ownStart
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(own.Microseconds())/float64(b.N), "own-cpu-µs/msg")
	b.ReportMetric(float64(sink.Microseconds())/float64(b.N), "sink-cpu-µs/msg")
	b.ReportMetric(float64(s.pipelined.Load())/float64(b.N), "pipelined/msg")
}

// startSMTPSink runs Postfix's smtp-sink with the options opts on a free
// loopback port and returns its address and process id; it skips the test
// or benchmark when smtp-sink is not installed.
func startSMTPSink(b testing.TB, opts ...string) (string, int) {
	b.Helper()
	path, err := exec.LookPath("smtp-sink")
	if err != nil {
		if path, err = exec.LookPath("/usr/sbin/smtp-sink"); err != nil {
			b.Skip("smtp-sink is not installed (Debian: apt-get install postfix)")
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(b)))
	args := opts
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // smtp-sink refuses to run as root
	}
	cmd := exec.Command(path, append(args, addr, "1000")...)
	if err := cmd.Start(); err != nil {
		b.Fatalf("start smtp-sink: %v", err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testenv.Eventually(b, 10*time.Second, "smtp-sink to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return addr, cmd.Process.Pid
}

// selfCPU is the user and system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user and system CPU time process pid has used, from
// /proc/<pid>/stat (clock ticks at 100 a second); 0 when it cannot be read.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// from the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100
}
