"""The drill's synthetic API gateway (tools/drill/spans.py): how many spans, how many slow."""

from __future__ import annotations

from tools.drill.scenarios import SCENARIOS, SpanTraffic
from tools.drill.servers import ScenarioClock
from tools.drill.spans import FAST_MS, SLOW_MS, SpanGenerator, gateway_spans


def generator(burns, rate=2.0) -> SpanGenerator:
    return SpanGenerator(SpanTraffic(burns, rate), ScenarioClock(60), "127.0.0.1:9")


def test_the_slow_share_follows_the_burn_and_the_remainder_carries_over():
    g = generator(((-1e9, 0.1), (600.0, 50.0)))
    # 10 minutes at 2 requests/s and 0.1x the budget's pace (1% budget): 1200 requests, 1.2 slow.
    first = g.batch(0.0, 600.0)
    assert len(first) == 1200 and first.count(SLOW_MS) == 1 and first.count(FAST_MS) == 1199
    # Then half of them slow (50x of a 1% budget), plus the 0.2 slow request carried over.
    second = g.batch(600.0, 1200.0)
    assert len(second) == 1200 and second.count(SLOW_MS) == 600


def test_small_steps_add_up_to_the_same_counts():
    g = generator(((-1e9, 50.0),), rate=3.0)
    steps = [g.batch(t * 0.37, (t + 1) * 0.37) for t in range(1000)]  # 370 s in uneven steps
    spans = [d for step in steps for d in step]
    assert len(spans) == 1110 and spans.count(SLOW_MS) == 555


def test_spans_are_server_spans_of_the_api_gateway_with_their_durations():
    payload = gateway_spans([FAST_MS, SLOW_MS], end_ns=10**18)
    (resource,) = payload["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "api-gateway"}} in resource["resource"]["attributes"]
    spans = resource["scopeSpans"][0]["spans"]
    assert [s["kind"] for s in spans] == [2, 2]  # SPAN_KIND_SERVER, what the SLO selects
    assert [(int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])) / 1e6 for s in spans] == [FAST_MS, SLOW_MS]


def test_the_spans_scenario_has_the_history_at_the_generators_rate():
    (scenario,) = [s for s in SCENARIOS if s.spans is not None]
    count = [s for s in scenario.series if s.metric.endswith("_count")]
    assert count and all(s.model.rates[0][1] == scenario.spans.requests_per_second for s in count)
