"""The template repository's own code: the template's plain .py files are what projects get."""

import json
import re
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


def table_figures(markdown: str) -> list[str]:
    """Every number in the Markdown tables of the decision guide and the performance figures."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return sorted(re.findall(r"\d[\d,.]*", "\n".join(rows)))


def test_chinese_readme_quotes_the_same_figures_as_the_english_one() -> None:
    english = (ROOT / "README.md").read_text()
    chinese = (ROOT / "README.zh-CN.md").read_text()
    # The decision guide and the performance summary; the Chinese README stops there.
    start, end = english.index("## BackgroundTasks or Celery?"), english.index("## Scenarios")

    assert table_figures(chinese) == table_figures(english[start:end])
    assert "python3 dev.py new ../my-service" in chinese
    assert "python3 dev.py test" in chinese


def test_chinese_benchmarks_quote_the_same_figures_as_the_english_ones() -> None:
    english = (ROOT / "docs" / "benchmarks.md").read_text()
    chinese = (ROOT / "docs" / "benchmarks.zh-CN.md").read_text()

    assert table_figures(english)  # the page has its table of figures
    assert table_figures(chinese) == table_figures(english)
