package e2e_test

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"renewals/pkg/kvstore"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// storesProfileEnv names a file prefix: when set, BenchmarkNotifierStores
// writes the CPU profile of each store's measured window (pass and sends,
// not the loading) to <prefix>-<store>.pprof.
const storesProfileEnv = "RENEWALS_BENCH_NOTIFIER_CPUPROFILE"

// storesRedisStatsEnv names a file: when set, BenchmarkNotifierStores writes
// redis-server's INFO commandstats (calls and µs per command) to it after
// the run on Redis.
const storesRedisStatsEnv = "RENEWALS_BENCH_REDIS_COMMANDSTATS"

// BenchmarkNotifierStores sends 20,000 due notices end to end on each store,
// the Redis store and the embedded JetStream key-value store: a scheduler
// pass (through the API) publishes them, and the notifier claims, re-reads,
// renders, sends into Postfix's smtp-sink over 8 connections, confirms and
// publishes each outcome. The clock runs from the start of the pass to the
// 20,000th sent outcome event. It reports emails/s and the CPU per email of
// the renewals process (this test process: serve, the scheduler pass and
// the NATS server, embedded or not) and of redis-server (0 on the embedded
// store, which runs inside the renewals process). Run with -benchtime=1x
// (make bench).
func BenchmarkNotifierStores(b *testing.B) {
	const n = 20_000
	for _, store := range []string{"redis", "kv"} {
		b.Run("store="+store, func(b *testing.B) {
			var r storeRun
			for range b.N {
				r = notifierStoreOnce(b, store, n)
			}
			b.ReportMetric(r.rate, "emails/s")
			b.ReportMetric(r.cpu, "cpu-µs/email")
			b.ReportMetric(r.redis, "redis-cpu-µs/email")
			b.ReportMetric(r.cpu+r.redis, "total-cpu-µs/email")
			b.ReportMetric(0, "ns/op")
		})
	}
}

type storeRun struct{ rate, cpu, redis float64 }

func notifierStoreOnce(b *testing.B, store string, n int) storeRun {
	b.StopTimer()
	sinkAddr, _ := testenv.SMTPSink(b)
	smtpURL := fmt.Sprintf("smtp://%s?tls=none&workers=%d", sinkAddr, benchSMTPWorkers)
	args := []string{"--target", "notifier,api", "--workers", strconv.Itoa(benchNotifierWorkers)}
	asOf := subscription.MustDate("2031-01-01")

	var (
		s           *e2e.Server
		nc          *nats.Conn
		redisPid    int
		redisClient *redis.Client
	)
	switch store {
	case "redis":
		var natsURL string
		nc, natsURL = benchNATS(b)
		rs := testenv.StartRedis(b)
		redisPid = rs.Pid()
		redisClient = rs.Client(b)
		loadDue(b, rs.URL, 0, n, asOf)
		s = e2e.Start(b, benchOptions(natsURL, rs.URL, sinkAddr))
	case "kv":
		s = e2e.Start(b, e2e.Options{Env: map[string]string{"RENEWALS_SMTP_URL": smtpURL}, Args: args})
		var err error
		if nc, err = nats.Connect(s.NATSURLAs(b, natsbus.ServiceUser)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		st, _, err := kvstore.New(context.Background(), js)
		if err != nil {
			b.Fatal(err)
		}
		loadDueInto(b, st, 0, n, asOf)
	}
	outcomes := watchOutcomes(b, nc, n)

	if prefix := os.Getenv(storesProfileEnv); prefix != "" {
		f, err := os.Create(prefix + "-" + store + ".pprof")
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	procCPU := func() time.Duration {
		if redisPid == 0 {
			return 0
		}
		return testenv.ProcessCPU(redisPid)
	}
	b.StartTimer()
	cpu0, redis0 := testenv.SelfCPU(), procCPU()
	start := time.Now()
	res := s.CLI(b, "run", "--as-of", asOf.String())
	if res.Code != 0 {
		b.Fatalf("run --as-of %s: exit %d: %s", asOf, res.Code, res.Stderr)
	}
	outcomes.wait(b, 5*time.Minute)
	elapsed := time.Since(start)
	cpu, redisCPU := testenv.SelfCPU()-cpu0, procCPU()-redis0
	b.StopTimer()
	if got := outcomes.count(subscription.OutcomeSent); got != n {
		b.Fatalf("sent %d notices, want %d (outcomes: %v)", got, n, outcomes.counts())
	}
	load, _ := os.ReadFile("/proc/loadavg")
	r := storeRun{
		rate:  float64(n) / elapsed.Seconds(),
		cpu:   float64(cpu.Microseconds()) / float64(n),
		redis: float64(redisCPU.Microseconds()) / float64(n),
	}
	b.Logf("store=%s: %d notices in %v: %.0f emails/s; CPU an email: renewals process %.0fµs, redis-server %.0fµs, together %.0fµs; load average at the end: %s",
		store, n, elapsed.Round(time.Millisecond), r.rate, r.cpu, r.redis, r.cpu+r.redis, strings.TrimSpace(string(load)))
	if f := os.Getenv(storesRedisStatsEnv); redisPid != 0 && f != "" {
		info, _ := redisClient.Info(context.Background(), "commandstats").Result()
		_ = os.WriteFile(f, []byte(info), 0o644)
	}
	s.Stop(b)
	return r
}
