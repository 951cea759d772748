package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names. Every data point carries baton.election.name, and
// baton.election.identity with Config.MetricIdentity; transitions also carry
// baton.election.direction.
const (
	MetricIsLeader         = "baton.election.is_leader"
	MetricTransitions      = "baton.election.transitions"
	MetricAcquireDuration  = "baton.election.acquire.duration"
	MetricRenewDuration    = "baton.election.renew.duration"
	MetricRenewFailures    = "baton.election.renew.failures"
	MetricSinceLastRenewal = "baton.election.since_last_renewal"
)

// latencyBuckets are histogram boundaries in seconds, from a loopback round
// trip to a renewal that barely made it.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// meters holds one Elector's instruments. The observable gauges are read by
// a callback registered for the duration of each Run.
type meters struct {
	meter            metric.Meter
	attrs            metric.MeasurementOption // name, and identity with Config.MetricIdentity
	elected, lost    metric.MeasurementOption // attrs plus direction
	isLeader         metric.Int64ObservableGauge
	transitions      metric.Int64Counter
	acquireDuration  metric.Float64Histogram
	renewDuration    metric.Float64Histogram
	renewFailures    metric.Int64Counter
	sinceLastRenewal metric.Float64ObservableGauge
}

func newMeters(cfg Config) (*meters, error) {
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	// The identity is opt-in: a default one is new at every restart, and
	// with it every restart would start new time series.
	base := []attribute.KeyValue{AttrName.String(cfg.Name)}
	if cfg.MetricIdentity {
		base = append(base, AttrIdentity.String(cfg.Identity))
	}
	with := func(extra ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), base...), extra...)...))
	}
	m := &meters{
		meter:   mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version)),
		attrs:   with(),
		elected: with(AttrDirection.String("elected")),
		lost:    with(AttrDirection.String("lost")),
	}
	var errs [6]error
	m.isLeader, errs[0] = m.meter.Int64ObservableGauge(MetricIsLeader,
		metric.WithDescription("Whether this candidate leads the election: 1 while leading, else 0."),
		metric.WithUnit("{leader}"))
	m.transitions, errs[1] = m.meter.Int64Counter(MetricTransitions,
		metric.WithDescription("Leadership transitions of this candidate, by direction (elected or lost)."),
		metric.WithUnit("{transition}"))
	m.acquireDuration, errs[2] = m.meter.Float64Histogram(MetricAcquireDuration,
		metric.WithDescription("From the send of the request that won leadership (for a handover, the standby's last request) to taking office."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	m.renewDuration, errs[3] = m.meter.Float64Histogram(MetricRenewDuration,
		metric.WithDescription("Duration of successful renewals of the leadership, from sending to confirmation."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	m.renewFailures, errs[4] = m.meter.Int64Counter(MetricRenewFailures,
		metric.WithDescription("Renewals of the leadership that failed: refused by the server, or not confirmed in time."),
		metric.WithUnit("{renewal}"))
	m.sinceLastRenewal, errs[5] = m.meter.Float64ObservableGauge(MetricSinceLastRenewal,
		metric.WithDescription("Time since the leader's last successful renewal (or acquisition); reported only while leading."),
		metric.WithUnit("s"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("election: create metrics: %w", err)
	}
	return m, nil
}

// register starts reporting the observable gauges of e until the returned
// registration is unregistered.
func (m *meters) register(e *Elector) (metric.Registration, error) {
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		leading, last := e.leadership()
		var v int64
		if leading {
			v = 1
			o.ObserveFloat64(m.sinceLastRenewal, time.Since(last).Seconds(), m.attrs)
		}
		o.ObserveInt64(m.isLeader, v, m.attrs)
		return nil
	}, m.isLeader, m.sinceLastRenewal)
	if err != nil {
		return nil, fmt.Errorf("election: register metrics callback: %w", err)
	}
	return reg, nil
}

func (m *meters) transition(ctx context.Context, elected bool) {
	if elected {
		m.transitions.Add(ctx, 1, m.elected)
	} else {
		m.transitions.Add(ctx, 1, m.lost)
	}
}
