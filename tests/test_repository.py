"""The template repository's own code: the template's plain .py files are what projects get."""

from tests.conftest import ROOT, run, tool


def test_repository_code_is_lint_clean_and_formatted() -> None:
    run([tool("ruff"), "check", "."], ROOT)
    run([tool("ruff"), "format", "--check", "."], ROOT)
