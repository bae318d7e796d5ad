package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// notifierGOGC is the garbage collector's target the benchmark runs the
// binaries with, the one deploy/k8s gives the notifier.
const notifierGOGC = "400"

// storesRedisStatsEnv names a file: when set, BenchmarkNotifierStores writes
// redis-server's INFO commandstats (calls and µs per command) to it after
// the run on Redis (with the binary's base name appended, when it runs a
// binary).
const storesRedisStatsEnv = "RENEWALS_BENCH_REDIS_COMMANDSTATS"

// The binaries that BenchmarkNotifierStores runs. By default it builds the
// tree's `renewals` with plain `go build` (no fault-test tag) and measures
// it alone.
const (
	// storesBinaryEnv names a renewals binary to measure instead of the
	// tree's build.
	storesBinaryEnv = "RENEWALS_BENCH_BINARY"
	// storesBaselineEnv names more renewals binaries, comma-separated
	// (e.g. older builds), to measure in the same run, store by store right
	// after the first, so that all are measured on the same machine load;
	// each is named by its file name.
	storesBaselineEnv = "RENEWALS_BENCH_BASELINE"
	// storesNATSServerEnv names a nats-server binary (2.10 or newer) for
	// the Redis runs; by default nats-server on PATH when it is new
	// enough, else one built from the module's own nats-server.
	storesNATSServerEnv = "RENEWALS_BENCH_NATS_SERVER"
)

// BenchmarkNotifierStores sends 20,000 due notices end to end on each store,
// the Redis store and the embedded JetStream key-value store: a scheduler
// pass (through the API) publishes them, and the notifier claims, re-reads,
// renders, sends into Postfix's smtp-sink over 8 connections, confirms and
// publishes each outcome. The clock runs from the start of the pass to the
// 20,000th sent outcome event.
//
// Each process runs on its own, as in production: `renewals serve` is the
// built binary (storesBinaryEnv, else the tree's build), redis-server and,
// on the Redis store, an external nats-server are processes of their own,
// and the CPU of each is read from /proc: emails/s and the CPU µs per email
// of the renewals process, of redis-server and of nats-server (on the
// embedded store NATS runs inside renewals and is counted there). The
// subscriptions are imported through the binary's own API before the clock
// starts, so that each build reads records it wrote itself; the test
// process only loads, starts the pass and counts outcome events, and its CPU
// is not counted. With storesBaselineEnv set, a second build is measured
// after the first on each store, and the closing note compares the two.
//
// With storesProfileEnv set the benchmark instead runs serve inside the test
// process (the test's CPU then counts the watcher and NATS server too) and
// writes a CPU profile of each store's run.
// Run with -benchtime=1x (make bench).
func BenchmarkNotifierStores(b *testing.B) {
	const n = 20_000
	if os.Getenv(storesProfileEnv) != "" {
		for _, store := range []string{"redis", "kv"} {
			b.Run("store="+store+"/in-process", func(b *testing.B) {
				var r storeRun
				for range b.N {
					r = notifierStoreOnce(b, store, n)
				}
				r.report(b)
			})
		}
		return
	}
	builds := []struct{ name, path string }{{"tree", os.Getenv(storesBinaryEnv)}}
	if builds[0].path == "" {
		builds[0].path = plainBinary(b)
	}
	for p := range strings.SplitSeq(os.Getenv(storesBaselineEnv), ",") {
		if p != "" {
			builds = append(builds, struct{ name, path string }{filepath.Base(p), p})
		}
	}
	natsBin := benchNATSServer(b)
	var note []string
	for _, store := range []string{"redis", "kv"} {
		b.Run("store="+store, func(b *testing.B) {
			for _, build := range builds {
				b.Run("build="+build.name, func(b *testing.B) {
					var r storeRun
					for range b.N {
						r = notifierStoreBinary(b, build.path, natsBin, store, n)
					}
					r.report(b)
					note = append(note, fmt.Sprintf("store=%s build=%s (%s): %.0f emails/s; µs an email: renewals %.0f + redis-server %.0f = %.0f; nats-server %.0f; %s",
						store, build.name, build.path, r.rate, r.cpu, r.redis, r.cpu+r.redis, r.nats, r.verdict(store)))
				})
			}
		})
	}
	// A parent benchmark's own log is not printed once it has run
	// sub-benchmarks: the note goes to standard output.
	fmt.Printf("BenchmarkNotifierStores closing note, one sitting (load average at the end %s):\n  %s\n", loadAverage(), strings.Join(note, "\n  "))
}

// The targets of issue 11: CPU µs an email of renewals and redis-server
// together, by store, and emails/s on each.
var (
	storesMaxMicros = map[string]float64{"redis": 200, "kv": 250}
	storesMinRate   = 4000.0
)

// verdict says whether r meets the targets of store; a benchmark on a
// shared machine reports a miss rather than failing.
func (r storeRun) verdict(store string) string {
	if r.cpu+r.redis <= storesMaxMicros[store] && r.rate >= storesMinRate {
		return "meets the targets"
	}
	return fmt.Sprintf("misses the targets (at most %.0f µs, at least %.0f emails/s)", storesMaxMicros[store], storesMinRate)
}

func (r storeRun) report(b *testing.B) {
	b.ReportMetric(r.rate, "emails/s")
	b.ReportMetric(r.cpu, "cpu-µs/email")
	b.ReportMetric(r.redis, "redis-cpu-µs/email")
	b.ReportMetric(r.nats, "nats-cpu-µs/email")
	b.ReportMetric(r.cpu+r.redis, "total-cpu-µs/email")
	b.ReportMetric(0, "ns/op")
}

func loadAverage() string {
	load, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(load))
}

// notifierStoreBinary is one run of BenchmarkNotifierStores on store with
// the renewals binary bin and, on Redis, the nats-server binary natsBin
// (empty: NATS in the test process, its CPU not counted).
func notifierStoreBinary(b *testing.B, bin, natsBin, store string, n int) storeRun {
	b.StopTimer()
	sinkAddr, _ := testenv.SMTPSink(b)
	asOf := subscription.MustDate("2031-01-01")
	env := map[string]string{
		// As the notifier's Deployment runs it (deploy/k8s): the heap may
		// grow to five times what is live, for fewer collections an email.
		"GOGC":                    notifierGOGC,
		"RENEWALS_SMTP_URL":       fmt.Sprintf("smtp://%s?tls=none&workers=%d", sinkAddr, benchSMTPWorkers),
		"RENEWALS_RESELLER_NAME":  e2e.SampleReseller,
		"RENEWALS_RESELLER_PHONE": e2e.SamplePhone,
		// As the servers of the other tests: JetStream syncs every two
		// minutes (BenchmarkEmbeddedDefault measures syncing every write).
		"RENEWALS_NATS_SYNC": "2m",
	}
	var redisPid, natsPid int
	var natsURL string
	var rs *testenv.Redis
	if store == "redis" {
		rs = testenv.StartRedis(b)
		redisPid = rs.Pid()
		env["RENEWALS_REDIS_URL"] = rs.URL
		if natsBin != "" {
			natsURL, natsPid = startNATSServer(b, natsBin)
		} else {
			natsURL = testenv.NATS(b).ClientURL()
			b.Log("no nats-server 2.10 or newer: NATS runs inside the test process and its CPU is not counted")
		}
		env["RENEWALS_NATS_URL"] = natsURL
	}
	p := startBinaryAt(b, bin, env, "--target", "notifier,api", "--workers", strconv.Itoa(benchNotifierWorkers))
	if store == "kv" {
		natsURL = binNATSURL(b, p)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	importDue(b, p, n, asOf)
	outcomes := watchOutcomes(b, nc, n)

	cpuOf := func(pid int) time.Duration {
		if pid == 0 {
			return 0
		}
		return testenv.ProcessCPU(pid)
	}
	ctx := context.Background()
	b.StartTimer()
	cpu0, redis0, nats0 := cpuOf(p.pid()), cpuOf(redisPid), cpuOf(natsPid)
	start := time.Now()
	code, body, err := p.request(ctx, http.DefaultClient, http.MethodPost, "/api/v1/scheduler/run", "application/json",
		strings.NewReader(`{"as_of":"`+asOf.String()+`"}`))
	if err != nil || code != http.StatusOK {
		b.Fatalf("scheduler run as of %s: %d %v: %s", asOf, code, err, body)
	}
	outcomes.wait(b, 5*time.Minute)
	elapsed := time.Since(start)
	cpu, redisCPU, natsCPU := cpuOf(p.pid())-cpu0, cpuOf(redisPid)-redis0, cpuOf(natsPid)-nats0
	b.StopTimer()
	peak := procStatus(b, p.pid(), "VmHWM")
	if got := outcomes.count(subscription.OutcomeSent); got != n {
		b.Fatalf("sent %d notices, want %d (outcomes: %v)", got, n, outcomes.counts())
	}
	perEmail := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	r := storeRun{rate: float64(n) / elapsed.Seconds(), cpu: perEmail(cpu), redis: perEmail(redisCPU), nats: perEmail(natsCPU)}
	b.Logf("store=%s %s: %d notices in %v: %.0f emails/s; CPU an email: renewals %.0fµs, redis-server %.0fµs, together %.0fµs; nats-server %.0fµs; renewals peak RSS %d MB; load average at the end: %s",
		store, bin, n, elapsed.Round(time.Millisecond), r.rate, r.cpu, r.redis, r.cpu+r.redis, r.nats, peak>>20, loadAverage())
	if f := os.Getenv(storesRedisStatsEnv); rs != nil && f != "" {
		info, _ := rs.Client(b).Info(context.Background(), "commandstats").Result()
		_ = os.WriteFile(f+"-"+filepath.Base(bin), []byte(info), 0o644)
	}
	return r
}

// importDue imports subscriptions [0, n), as loadDueInto stores them,
// through the API of p, as a CSV file.
func importDue(b *testing.B, p *binServe, n int, asOf subscription.Date) {
	b.Helper()
	var csv strings.Builder
	csv.WriteString("subscription_id,end_date,customer_account,customer_name,product,seats,seats_assigned,access_model,term,status,locale,cm_name,cm_email,cm_phone,pa_name,pa_email\n")
	end := asOf.AddDays(30).String()
	for i := range n {
		id := benchID(i)
		fmt.Fprintf(&csv, "%s,%s,ACC%s,Customer %s,Suite Pro,25,20,single-user,P1Y,active,en-GB,Contract Manager %s,cm%s@example.com,+44 20 7946 0000,Primary Admin %s,pa%s@example.com\n",
			id, end, id, id, id, id, id, id)
	}
	code, body, err := p.request(context.Background(), http.DefaultClient, http.MethodPost, "/api/v1/subscriptions/import", "text/csv", strings.NewReader(csv.String()))
	if err != nil || code != http.StatusOK {
		b.Fatalf("import: %d %v: %s", code, err, body)
	}
	var rep struct{ Created int }
	if err := json.Unmarshal(body, &rep); err != nil || rep.Created != n {
		b.Fatalf("import created %d of %d subscriptions (%v): %s", rep.Created, n, err, body)
	}
}

// binNATSURL is the client URL, with the service user's password, of the
// NATS server embedded in p.
func binNATSURL(b *testing.B, p *binServe) string {
	b.Helper()
	m := regexp.MustCompile(`"embedded NATS started","listen":"([^"]+)"`).FindStringSubmatch(p.logs())
	if m == nil {
		b.Fatalf("renewals serve did not say where its NATS server listens:\n%s", p.logs())
	}
	pw, err := os.ReadFile(filepath.Join(p.DataDir, natsbus.ServicePasswordFile))
	if err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(m[1])
	if err != nil {
		b.Fatal(err)
	}
	u.User = url.UserPassword(natsbus.ServiceUser, strings.TrimSpace(string(pw)))
	return u.String()
}

// plainBinary builds the tree's renewals as users build it (no build tags)
// into a directory removed at the end.
func plainBinary(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "renewals")
	if out, err := exec.Command("go", "build", "-o", bin, "renewals/services/renewals").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// benchNATSServer finds a nats-server binary of version 2.10 or newer (the
// oldest renewals accepts): storesNATSServerEnv, else nats-server on PATH,
// else one built from the nats-server module renewals embeds. It returns ""
// when none is to be had.
func benchNATSServer(b *testing.B) string {
	b.Helper()
	if p := os.Getenv(storesNATSServerEnv); p != "" {
		return p
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		out, _ := exec.Command(p, "--version").Output()
		var major, minor int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "nats-server: v%d.%d", &major, &minor); err == nil && (major > 2 || major == 2 && minor >= 10) {
			return p
		}
	}
	bin := filepath.Join(b.TempDir(), "nats-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		b.Logf("build nats-server: %v\n%s", err, out)
		return ""
	}
	return bin
}

// startNATSServer runs the nats-server binary bin with JetStream on a free
// loopback port, storing under a fresh directory, until the end of the
// benchmark, and returns its URL and process id once it accepts clients.
func startNATSServer(b *testing.B, bin string) (string, int) {
	b.Helper()
	port := testenv.FreePort(b)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", b.TempDir())
	if err := cmd.Start(); err != nil {
		b.Fatalf("start nats-server: %v", err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	u := "nats://127.0.0.1:" + strconv.Itoa(port)
	testenv.Eventually(b, 10*time.Second, "nats-server to accept clients on "+u, func() bool {
		nc, err := nats.Connect(u)
		if err != nil {
			return false
		}
		nc.Close()
		return true
	})
	return u, cmd.Process.Pid
}

type storeRun struct{ rate, cpu, redis, nats float64 }

// notifierStoreOnce is one run of BenchmarkNotifierStores with serve inside
// the test process, for a CPU profile (storesProfileEnv): its CPU figure is
// the test process's, the NATS server and the outcome watcher included.
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
