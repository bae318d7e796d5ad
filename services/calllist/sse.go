package calllist

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

// DefaultHeartbeat is how often EventStream writes a comment line on a quiet
// stream, so proxies keep the connection open and clients notice a dead one.
const DefaultHeartbeat = 15 * time.Second

// EventStream serves GET /api/v1/events: every event of the RENEWALS stream
// as server-sent events, with id = the stream sequence, event = the
// CloudEvents type and data = the CloudEvents JSON. A client that sends
// Last-Event-ID (or ?last_event_id=, or ?from_seq= for the first one wanted)
// resumes right after that event, without loss, through an ordered consumer;
// otherwise it gets the events published from now on.
type EventStream struct {
	JS  jetstream.JetStream
	Log *zap.Logger
	// Heartbeat defaults to DefaultHeartbeat.
	Heartbeat time.Duration
	// Context, when set, ends every stream when it ends (server shutdown:
	// http.Server.Shutdown does not cancel the requests it waits for).
	Context context.Context
}

// ServeHTTP streams events until the client goes away or the server stops.
func (s *EventStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal", "streaming is not supported by this connection")
		return
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	last, name := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if last == "" {
		last, name = r.URL.Query().Get("last_event_id"), "last_event_id"
	}
	if last != "" {
		seq, err := strconv.ParseUint(last, 10, 64)
		if err != nil || seq == math.MaxUint64 {
			// The largest sequence has no next one to resume at: seq+1
			// would wrap to 0, which the server refuses.
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%s %.40q: send the id of the last event received, a stream sequence number below %d", name, last, uint64(math.MaxUint64)))
			return
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	} else if v := r.URL.Query().Get("from_seq"); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil || seq == 0 {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("from_seq %q: use a stream sequence number from 1", v))
			return
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if s.Context != nil {
		stop := context.AfterFunc(s.Context, cancel)
		defer stop()
	}
	cons, err := s.JS.OrderedConsumer(ctx, event.StreamName, cfg)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "cannot follow the event stream now: "+err.Error())
		return
	}
	msgs := make(chan jetstream.Msg, 256)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "cannot follow the event stream now: "+err.Error())
		return
	}
	defer cc.Stop()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A first comment tells the client the subscription is in place.
	fmt.Fprint(w, ": connected to the renewals event stream\n\n")
	flusher.Flush()

	beat := time.NewTicker(cmp.Or(s.Heartbeat, DefaultHeartbeat))
	defer beat.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			if s.Context != nil && s.Context.Err() != nil {
				// The server is stopping, not the client: say so, so that
				// a feed reconnects (with Last-Event-ID) instead of
				// reporting an error.
				fmt.Fprint(w, "event: shutdown\ndata: the server is shutting down; reconnect with Last-Event-ID to resume\n\n")
				flusher.Flush()
			}
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case m := <-msgs:
			buf.Reset()
			writeEvent(&buf, m)
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			// Drain what else is ready before flushing once.
			for more := true; more; {
				select {
				case m := <-msgs:
					buf.Reset()
					writeEvent(&buf, m)
					if _, err := w.Write(buf.Bytes()); err != nil {
						return
					}
				default:
					more = false
				}
			}
			flusher.Flush()
		}
	}
}

// writeEvent formats one message as a server-sent event.
func writeEvent(b *bytes.Buffer, m jetstream.Msg) {
	var seq uint64
	if meta, err := m.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	typ := m.Subject()
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(m.Data(), &head) == nil && head.Type != "" {
		typ = head.Type
	}
	fmt.Fprintf(b, "id: %d\nevent: %s\n", seq, subscription.OneLine(typ))
	data := strings.ReplaceAll(string(m.Data()), "\r\n", "\n")
	for line := range strings.SplitSeq(data, "\n") {
		b.WriteString("data: ")
		b.WriteString(strings.ReplaceAll(line, "\r", ""))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
}
