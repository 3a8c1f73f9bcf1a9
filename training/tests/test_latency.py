"""The latency benchmark runs on a bundle and prints one row per model (numbers are not asserted: a benchmark)."""

from pathlib import Path

from dlip.eval.latency import TASKS, bundle_latency, latency_table

FIXTURE = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "micro"


def test_latency_of_the_micro_fixture():
    r = bundle_latency(FIXTURE, batch_sizes=(1, 2), repeats=1)
    assert set(r) == set(TASKS) and all(set(v) == {1, 2} for v in r.values())
    assert all(t > 0 for v in r.values() for t in v.values())
    table = latency_table({"a": r, "b": r})
    assert table.count("\n") == 4 and "| a |" in table and table.strip().endswith("1.00x |")
