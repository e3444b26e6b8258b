"""The benchmark script still runs (on a small corpus: it is not a test of speed)."""

import pytest

from app.features.embeddings.bench import main


def test_benchmark_prints_throughput_and_latency(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--chunks", "300", "--queries", "20"])

    output = capsys.readouterr().out
    assert "embedding: " in output
    assert "chunks/s" in output
    assert "search over 300 chunks" in output
    assert "p50" in output
    assert "p99" in output
