"""The docs cannot rot: every `curl` example runs against a real service, every link resolves.

The conventions the docs follow are in tests/helpers/markdown.py, the running service in
tests/helpers/service.py.
"""

from pathlib import Path

import pytest

from tests.conftest import QUESTIONS, ROOT, Combo, choice_values, render, richest
from tests.helpers.markdown import (
    Markdown,
    curl_examples,
    dead_links,
    markdown_files,
    run_example,
    undefined_names,
)
from tests.helpers.service import Services

BACKENDS = choice_values(QUESTIONS["task_backend"])


@pytest.mark.parametrize("running_service", BACKENDS, indirect=True)
def test_every_curl_example_answers_its_documented_status(
    running_service: tuple[Path, str, Services], tmp_path: Path
) -> None:
    project, base_url, services = running_service
    readmes = [project / "README.md", *sorted(project.glob("app/features/*/README.md"))]
    assert len(readmes) == 1 + len(choice_values(QUESTIONS["scenarios"]))
    workdir = tmp_path / "shell"
    workdir.mkdir()

    ran = 0
    for readme in readmes:
        examples, problems = curl_examples(Markdown.read(readme), project)
        assert not problems, "\n".join(problems)
        assert examples, f"{readme.relative_to(project)} has no curl example"
        for example in examples:
            run_example(example, base_url, workdir)
            ran += len(example.statuses)
    assert ran >= 20

    if "smtp" in dict(services.processes):
        # The email README's sign-ups went out as real mail.
        services.wait_until("welcome email", lambda: "Welcome aboard" in services.log("smtp"))


# --- Links --------------------------------------------------------------------------------


def link_combos() -> list[Combo]:
    bare = {"scenarios": [], "include_docker": False, "include_ci": False}
    return [richest(backend) for backend in BACKENDS] + [
        Combo({**richest(backend).answers, **bare}) for backend in BACKENDS
    ]


@pytest.mark.parametrize("combo", link_combos(), ids=lambda combo: combo.id)
def test_rendered_markdown_links_resolve_and_examples_follow_the_conventions(
    combo: Combo, template_snapshot: Path, tmp_path: Path
) -> None:
    project = render(template_snapshot, tmp_path / "project", combo.answers)
    files = markdown_files(project)
    assert project / "README.md" in files

    problems = []
    for path in files:
        doc = Markdown.read(path)
        relative = path.relative_to(project)
        problems += [f"{relative}: {p}" for p in dead_links(doc, project)]
        problems += [f"{relative}: {p}" for p in undefined_names(doc)]
        problems += curl_examples(doc, project)[1]
    assert not problems, "\n".join(problems)


def test_template_repository_markdown_links_resolve() -> None:
    files = sorted(ROOT.glob("*.md")) + sorted((ROOT / "docs").rglob("*.md"))
    assert ROOT / "README.md" in files

    problems = []
    for path in files:
        problems += [
            f"{path.relative_to(ROOT)}: {p}" for p in dead_links(Markdown.read(path), ROOT)
        ]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_claim(tmp_path: Path) -> None:
    """A dead link, a missing heading, an unnamed status and an undefined name are all caught."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "code.py").write_text("class Queue:\n    async def enqueue(self): ...\n")
    (tmp_path / "README.md").write_text(
        "# Über `uns` & co.\n\n## Über uns & co\n\n"
        "[ok](#über-uns--co) [ok](#über-uns--co-1) [ok](app/code.py) [ok](https://x.org/y)\n"
        "[dead](missing.md) [no heading](#nowhere) `[not a link](missing.md)`\n\n"
        "`Queue.enqueue` in [`app/code.py`](app/code.py), `Queue.publish` in\n"
        "[`app/code.py`](app/code.py).\n\n"
        "```sh\ncurl -sS http://127.0.0.1:8000/health   # → 200\n"
        "curl -sS http://127.0.0.1:8000/jobs/1\n"
        "curl -sS http://127.0.0.1:8000/jobs/2   # → 401\n"
        "curl -sS http://127.0.0.1:8000/jobs/3   # → 404\n"
        'curl -sS -H "Authorization: Bearer $API_KEY" http://127.0.0.1:8000/jobs/4   # → 404\n'
        "```\n"
    )
    doc = Markdown.read(tmp_path / "README.md")

    assert dead_links(doc, tmp_path) == [
        "missing.md: no such file",
        "#nowhere: no heading #nowhere in README.md",
    ]
    assert undefined_names(doc) == ["`Queue.publish` is not defined in app/code.py"]
    examples, problems = curl_examples(doc, tmp_path)
    assert examples[0].statuses == (200, 401, 404)
    assert len(problems) == 2
    assert "end the command with its status" in problems[0]
    assert "/jobs/3" in problems[1] and "send a key" in problems[1]
