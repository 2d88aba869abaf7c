package outbox

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

func benchMsg(i int64) []byte {
	return fmt.Appendf(nil, "Message-ID: <b%d@mailbot.test>\r\nFrom: bot@mailbot.test\r\nSubject: bench\r\n\r\n%01000d\r\n", i, i)
}

var benchEnv = Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"ops@mailbot.test"}}

// BenchmarkEnqueue measures durable enqueues: each returns only once its
// message is on stable storage.
func BenchmarkEnqueue(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		ob, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		var i int64
		for b.Loop() {
			i++
			if _, _, err := ob.Enqueue(context.Background(), benchEnv, benchMsg(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	// batch100: one EnqueueBatch per 100 messages, as mail.send with a
	// list does; the metric counts messages, not calls.
	b.Run("batch100", func(b *testing.B) {
		ob, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		var i int64
		subs := make([]Submission, 100)
		for b.Loop() {
			for j := range subs {
				i++
				subs[j] = Submission{Envelope: benchEnv, Data: benchMsg(i)}
			}
			if _, err := ob.EnqueueBatch(context.Background(), subs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(subs))/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("parallel64", func(b *testing.B) {
		ob, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		var n atomic.Int64
		b.SetParallelism(32) // 32 * GOMAXPROCS enqueuers
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := ob.Enqueue(context.Background(), benchEnv, benchMsg(n.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkDelivery compares the smtp client sending b.N messages on one
// connection to a fast sink with the outbox delivering b.N queued messages
// to the same kind of sink with one worker (spool reads, locks, moves to
// sent/ and logging included; the enqueue is not timed).
func BenchmarkDelivery(b *testing.B) {
	b.Run("client", func(b *testing.B) {
		sink := smtptest.NewSink(b)
		d := &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost"}
		c, err := d.Dial(context.Background(), sink.Addr())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var i int64
		for b.Loop() {
			i++
			if _, err := c.SendMail(context.Background(), benchEnv.From, benchEnv.To, benchMsg(i), nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	for _, sessions := range []int{1, 2} {
		b.Run(fmt.Sprintf("outbox-%dsession", sessions), func(b *testing.B) { benchOutboxDelivery(b, sessions) })
	}
	// enqueue+deliver is what `mailbot exec --deliver` does with a script's
	// mail.send of a list: b.N messages stored durably with EnqueueBatch
	// (one flush), then delivered over one session; both are timed.
	b.Run("enqueue+deliver", func(b *testing.B) {
		sink := smtptest.NewSink(b)
		ob, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		subs := make([]Submission, b.N)
		for i := range subs {
			subs[i] = Submission{Envelope: benchEnv, Data: benchMsg(int64(i))}
		}
		accts := map[string]Account{"default": {
			Dialer: &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second},
			Addr:   sink.Addr(),
		}}
		b.ResetTimer()
		if _, err := ob.EnqueueBatch(context.Background(), subs); err != nil {
			b.Fatal(err)
		}
		rep, err := ob.DeliverOnce(context.Background(), accts)
		b.StopTimer()
		if err != nil || rep.Sent != b.N || sink.Messages() != int64(b.N) {
			b.Fatalf("report %+v, sink got %d, err %v", rep, sink.Messages(), err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// benchOutboxDelivery delivers b.N queued messages with the given number
// of parallel sessions (Account.Concurrency).
func benchOutboxDelivery(b *testing.B, sessions int) {
	{
		sink := smtptest.NewSink(b)
		ob, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 64 {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					if _, _, err := ob.Enqueue(context.Background(), benchEnv, benchMsg(i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		accts := map[string]Account{"default": {
			Dialer: &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second},
			Addr:   sink.Addr(), Concurrency: sessions,
		}}
		b.ResetTimer()
		rep, err := ob.DeliverOnce(context.Background(), accts)
		b.StopTimer()
		if err != nil || rep.Sent != b.N || sink.Messages() != int64(b.N) {
			b.Fatalf("report %+v, sink got %d, err %v", rep, sink.Messages(), err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
}
