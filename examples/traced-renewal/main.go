// Command traced-renewal shows the spans and metrics baton makes over a
// leadership's life: election.campaign and the lock's lock.acquire (and
// lock.wait when it waited in line), one election.renew per renewal, then
// election.step_down and election.release when it resigns; every span
// carries the fencing token (baton.lock.fence). It leads for --lead,
// resigns, and campaigns again until interrupted.
//
// Spans go to stdout as JSON and metrics to stderr, or both to an OTLP
// collector when OTEL_EXPORTER_OTLP_ENDPOINT (or a signal's own endpoint
// variable) is set, over OTLP/HTTP or, with OTEL_EXPORTER_OTLP_PROTOCOL=grpc,
// over gRPC. The SDK is wired as a service should wire it: batched spans,
// periodic metrics, retries and shutdown bounded, so a collector that hangs
// delays neither the election nor the exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/valkey-io/valkey-go"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// shutdownTimeout bounds the flush of the last spans and metrics at exit:
// a collector that accepts connections and never answers must not hold the
// process (the exporter's own timeout, OTEL_EXPORTER_OTLP_TIMEOUT, is 10s
// per request by default, and its retries would go on for a minute).
const shutdownTimeout = 5 * time.Second

// exportRetry bounds the exporters' retries of one batch: the default goes
// on for a minute, during which the next batches queue up.
const exportRetry = 15 * time.Second

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "valkey-server `host:port`")
	name := flag.String("name", "traced-renewal", "election name")
	lead := flag.Duration("lead", 3*time.Second, "how long to lead before resigning")
	pretty := flag.Bool("pretty", false, "indent the JSON spans on stdout")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *name, *lead, *pretty, shutdownTimeout); err != nil {
		slog.Error("traced-renewal", "error", err)
		os.Exit(1)
	}
}

// run leads, resigns and campaigns again until ctx ends, then flushes the
// telemetry within shutdown.
func run(ctx context.Context, addr, name string, lead time.Duration, pretty bool, shutdown time.Duration) error {
	// The identity goes on the Resource as service.instance.id, which every
	// exporter sends with every span and metric point: the election's
	// metrics then need no identity attribute of their own (see
	// election.Config.MetricIdentity).
	identity := election.DefaultIdentity()
	res := resource.NewSchemaless(semconv.ServiceName("traced-renewal"), semconv.ServiceInstanceID(identity))
	tp, mp, err := providers(ctx, res, pretty)
	if err != nil {
		return err
	}
	defer func() {
		// Not ctx, which has ended: a fresh one, bounded.
		sctx, cancel := context.WithTimeout(context.Background(), shutdown)
		defer cancel()
		if err := errors.Join(tp.Shutdown(sctx), mp.Shutdown(sctx)); err != nil {
			slog.Warn("telemetry not flushed", "error", err)
		}
	}()

	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true, DisableRetry: true})
	if err != nil {
		return err
	}
	defer client.Close()

	var e *election.Elector
	e, err = election.New(client, election.Config{
		Name:     name,
		Identity: identity,
		TTL:      3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		// Never set as the globals: the library takes them as options.
		TracerProvider: tp,
		MeterProvider:  mp,
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

// providers returns a tracer and a meter provider. With an OTLP endpoint in
// the environment they export there, over the protocol that
// OTEL_EXPORTER_OTLP_PROTOCOL (or the signal's own variable) names, and the
// exporters read every other OTEL_EXPORTER_OTLP_* variable themselves.
// Without one, spans go to stdout and metrics to stderr.
func providers(ctx context.Context, res *resource.Resource, pretty bool) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider, error) {
	var (
		spans   sdktrace.SpanExporter
		metrics sdkmetric.Exporter
		err     error
	)
	switch proto, otlp := protocol("TRACES"); {
	case !otlp:
		opts := []stdouttrace.Option{stdouttrace.WithWriter(os.Stdout)}
		if pretty {
			opts = append(opts, stdouttrace.WithPrettyPrint())
		}
		spans, err = stdouttrace.New(opts...)
	case proto == "grpc":
		spans, err = otlptracegrpc.New(ctx, otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
			Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second, MaxElapsedTime: exportRetry}))
	case proto == "http/protobuf":
		spans, err = otlptracehttp.New(ctx, otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
			Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second, MaxElapsedTime: exportRetry}))
	default:
		err = unsupported(proto)
	}
	if err != nil {
		return nil, nil, err
	}
	switch proto, otlp := protocol("METRICS"); {
	case !otlp:
		metrics, err = stdoutmetric.New(stdoutmetric.WithWriter(os.Stderr))
	case proto == "grpc":
		metrics, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{
			Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second, MaxElapsedTime: exportRetry}))
	case proto == "http/protobuf":
		metrics, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{
			Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second, MaxElapsedTime: exportRetry}))
	default:
		err = unsupported(proto)
	}
	if err != nil {
		_ = spans.Shutdown(ctx)
		return nil, nil, err
	}
	// The batcher exports on its own goroutine: ending a span never waits
	// for the collector (the batch queue drops spans when it is full, it
	// does not block). OTEL_BSP_* and OTEL_METRIC_EXPORT_* tune both.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spans), sdktrace.WithResource(res))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metrics)), sdkmetric.WithResource(res))
	return tp, mp, nil
}

// protocol returns the OTLP protocol for a signal ("TRACES", "METRICS") and
// whether an OTLP endpoint is configured for it at all. The signal's own
// variable wins over the general one; the default is http/protobuf, as the
// OpenTelemetry specification says.
func protocol(signal string) (proto string, otlp bool) {
	otlp = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
	proto = os.Getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto == "" {
		proto = "http/protobuf"
	}
	return proto, otlp
}

func unsupported(proto string) error {
	return fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q is not supported: use http/protobuf (the default) or grpc (the Go exporters have no http/json)", proto)
}
