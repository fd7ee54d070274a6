"""The deferred tally writes exactly what direct prometheus-client calls would have."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from observability.metrics import Tally

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = (0.0, 0.001, 0.0010001, 0.005, 0.01, 0.5, 1.0, 7.0, 0.02, 0.001)


def _metrics() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ("route",), registry=registry)
    gauge = Gauge("g", "g", registry=registry)
    histogram = Histogram("h", "h", ("route",), buckets=BUCKETS, registry=registry)
    return registry, counter, gauge, histogram


def test_flush_matches_direct_calls_sample_for_sample() -> None:
    direct, counter, gauge, histogram = _metrics()
    for n, value in enumerate(VALUES):
        counter.labels(f"r{n % 2}").inc()
        gauge.inc()
        histogram.labels(f"r{n % 3}").observe(value)

    tallied, counter, gauge, histogram = _metrics()
    tally = Tally()
    for n, value in enumerate(VALUES):
        tally.inc(counter.labels(f"r{n % 2}"))
        tally.inc(gauge)
        tally.observe(histogram.labels(f"r{n % 3}"), value)
    assert tallied.get_sample_value("c_total", {"route": "r0"}) == 0  # nothing before a flush
    tally.flush()

    def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {(s.name, tuple(sorted(s.labels.items())), s.value)
                for family in registry.collect() for s in family.samples
                if not s.name.endswith("_created")}

    assert samples(tallied) == samples(direct)


def test_a_second_flush_adds_only_what_came_after() -> None:
    registry, counter, _, histogram = _metrics()
    tally = Tally()
    tally.inc(counter.labels("a"), 2)
    tally.observe(histogram.labels("a"), 0.05)
    tally.flush()
    tally.flush()
    tally.inc(counter.labels("a"))
    tally.flush()
    assert registry.get_sample_value("c_total", {"route": "a"}) == 3
    assert registry.get_sample_value("h_count", {"route": "a"}) == 1
    assert registry.get_sample_value("h_bucket", {"route": "a", "le": "0.1"}) == 1
    assert registry.get_sample_value("h_bucket", {"route": "a", "le": "0.01"}) == 0
