import pytest

from tools.drill import durations


@pytest.mark.parametrize("text,seconds", [("5m", 300), ("1h30m", 5400), ("3d", 259200), ("500ms", 0.5),
                                          ("1w", 604800), ("0s", 0), ("2h0m15s", 7215)])
def test_parse(text, seconds):
    assert durations.parse(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m5", "1.5h", "5 m", "1h1d"])
def test_parse_rejects_what_prometheus_rejects(bad):
    with pytest.raises(ValueError):
        durations.parse(bad)


@pytest.mark.parametrize("seconds,text", [(2.5, "2s500ms"), (30, "30s"), (90, "1m30s"), (259200, "3d"), (0.0004, "1ms")])
def test_format_seconds(seconds, text):
    assert durations.format_seconds(seconds) == text


def test_scale_divides_and_respects_floor_and_zero():
    assert durations.scale("1h", 120) == "30s"
    assert durations.scale("30s", 720, floor=0.1) == "100ms"
    assert durations.scale("0s", 120) == "0s"


def test_scale_promql_rewrites_ranges_subqueries_and_offsets():
    expr = 'sum(rate(x[5m] offset 1h)) / max_over_time(y[1d:5m]) + z[3d:]'
    assert durations.scale_promql(expr, 60) == 'sum(rate(x[5s] offset 1m)) / max_over_time(y[24m:5s]) + z[1h12m:]'


def test_scale_promql_never_touches_label_values_or_comments():
    expr = 'rate(x{window="[5m]", le="0.3"}[1h]) # not [5m]\n> 0'
    assert durations.scale_promql(expr, 60) == 'rate(x{window="[5m]", le="0.3"}[1m]) # not [5m]\n> 0'


def test_unscalable_constructs_are_named():
    assert durations.unscalable_constructs("time() - pbs_last_success_timestamp > 86400")
    assert durations.unscalable_constructs("predict_linear(node_filesystem_avail_bytes[6h], 4 * 3600) < 0")
    assert durations.unscalable_constructs('rate(x{job="time()"}[5m])') == []


def test_window_extremes():
    expr = "rate(a[5m]) / rate(b[1h] offset 30m)"
    assert durations.smallest_range(expr) == 300
    assert durations.largest_range(expr) == 3600 + 1800
    assert durations.smallest_range("vector(1)") is None
