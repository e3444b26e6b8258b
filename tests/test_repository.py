"""The template repository's own code: the template's plain .py files are what projects get."""

import json
import sys

from tests.conftest import ROOT, run, tool


def test_repository_code_is_lint_clean_and_formatted() -> None:
    run([tool("ruff"), "check", "."], ROOT)
    run([tool("ruff"), "format", "--check", "."], ROOT)


def test_template_benchmark_runs_in_smoke_mode() -> None:
    output = run([sys.executable, "bench/template_bench.py", "--smoke"], ROOT)

    result = json.loads(output.strip().splitlines()[-1])  # the last line is one JSON object
    assert result["rendered_files"] > 100
    assert result["render_cli_median_s"] > 0
    assert result["render_in_process_median_s"] > 0
