// Command traced-renewal shows the spans baton makes over a leadership's
// life: election.campaign and election.acquire (with the lock's lock.acquire
// inside), one election.renew per renewal, then election.step_down and
// election.release when it resigns; every span carries the fencing token
// (baton.lock.fence). It leads for --lead, resigns, and campaigns again
// until interrupted. Spans go to stdout as JSON, or to an OTLP/HTTP
// collector when OTEL_EXPORTER_OTLP_ENDPOINT is set.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/valkey-io/valkey-go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "valkey-server `host:port`")
	name := flag.String("name", "traced-renewal", "election name")
	lead := flag.Duration("lead", 3*time.Second, "how long to lead before resigning")
	pretty := flag.Bool("pretty", false, "indent the JSON spans on stdout")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *name, *lead, *pretty); err != nil {
		slog.Error("traced-renewal", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, name string, lead time.Duration, pretty bool) error {
	tp, err := tracerProvider(ctx, pretty)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx) // flushes the last spans
	}()

	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		return err
	}
	defer client.Close()

	var e *election.Elector
	e, err = election.New(client, election.Config{
		Name: name,
		TTL:  3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		TracerProvider: tp, // never set as the global: the library takes it as an option
		Callbacks: callbacks.Callbacks{
			OnElected: func(ctx context.Context, term callbacks.Term) {
				slog.Info("elected", "fence", term.Fence, "resigning_in", lead)
				select {
				case <-ctx.Done():
				case <-time.After(lead):
					_ = e.Resign(ctx) // with OnElected's ctx: starts the step-down, returns at once
				}
			},
			OnLost: func(term callbacks.Term) { slog.Info("stepped down", "fence", term.Fence) },
		},
	})
	if err != nil {
		return err
	}
	if err := e.Run(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// tracerProvider exports to OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is
// set (the exporter reads the standard OTEL_EXPORTER_OTLP_* variables), and
// to stdout otherwise.
func tracerProvider(ctx context.Context, pretty bool) (*sdktrace.TracerProvider, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exp, err = otlptracehttp.New(ctx)
	} else {
		opts := []stdouttrace.Option{stdouttrace.WithWriter(os.Stdout)}
		if pretty {
			opts = append(opts, stdouttrace.WithPrettyPrint())
		}
		exp, err = stdouttrace.New(opts...)
	}
	if err != nil {
		return nil, err
	}
	res := resource.NewSchemaless(semconv.ServiceName("traced-renewal"))
	// A batcher in production; the syncer here shows each span as it ends.
	return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res)), nil
}
