"""The channel benchmark's figures (pure functions of bench/channel_latency.py)."""
import importlib.util
import random
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "channel_latency", Path(__file__).resolve().parents[1] / "bench" / "channel_latency.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def latencies(seed: int, scale: float = 1.0, n: int = 768) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.lognormvariate(-2.8, 0.5) for _ in range(n)]


def test_percentile_picks_the_nearest_rank():
    values = [i / 100 for i in range(101)]
    assert bench.percentile(values, 0.5) == 0.5
    assert bench.percentile(values, 0.99) == 0.99
    assert bench.percentile(list(reversed(values)), 0.0) == 0.0


def test_two_samples_of_one_channel_give_an_interval_around_one():
    low, high = bench.ratio_interval(latencies(1), latencies(2), 0.99)
    assert low < 1 < high
    assert high - low > 0.1  # p99 of 768 messages is a handful of values: it is not a sharp figure
    low50, high50 = bench.ratio_interval(latencies(1), latencies(2), 0.5)
    assert low50 < 1 < high50 and high50 - low50 < high - low


def test_a_channel_30_percent_slower_is_outside_one():
    low, high = bench.ratio_interval(latencies(1, scale=1.3), latencies(2), 0.5)
    assert 1.15 < low < 1.3 < high


def test_the_interval_is_the_same_for_the_same_run():
    run = latencies(3), latencies(4)
    assert bench.ratio_interval(*run, 0.99) == bench.ratio_interval(*run, 0.99)
