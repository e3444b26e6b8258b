"""The docs cannot rot: every `curl` example runs against a real service, every link resolves.

Conventions the generated READMEs follow (and these tests enforce):

- `curl` examples live in ```sh or ```bash blocks, address the service as
  http://127.0.0.1:8000, and end with the status they answer as a comment: `# → 201`.
- Each sends a key, `-H "Authorization: Bearer $API_KEY"` (or `$OPS_API_KEY`), except
  for `/health` and an example of the 401 itself: the tests run them against a service in
  production mode, which refuses a request without one.
- Each block is self-contained shell a user can paste (ids are captured with `python3 -c`),
  so the tests run each block on its own, in a fresh `bash` with `set -eo pipefail`.
- Where a README names code as "`symbol` in [`path`](path)", the symbol is defined there.
"""

import os
import re
import shutil
import socket
import subprocess
import time
import unicodedata
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    QUESTIONS,
    ROOT,
    Combo,
    choice_values,
    project_env,
    render,
    richest,
    sync_project,
)

DOCS_BASE_URL = "http://127.0.0.1:8000"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = choice_values(QUESTIONS["task_backend"])
SHELL_LANGUAGES = {"sh", "bash", "shell"}

# --- Reading Markdown -------------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*\b(?:name|id)\s*=\s*["']([^"']+)["']""")
URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# "`symbol` in [`path`](path)": the README says where something is handled.
NAMED_CODE = re.compile(r"`([A-Za-z_][\w.]*)` in\s+\[`[^`]+`\]\(([^)#\s]+)\)")


@dataclass
class Markdown:
    """A Markdown file split into prose lines (code removed) and fenced code blocks."""

    path: Path
    prose: list[str] = field(default_factory=list)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (language, body)

    @classmethod
    def read(cls, path: Path) -> "Markdown":
        doc = cls(path)
        fence: str | None = None
        language, body = "", []
        for line in path.read_text(encoding="utf-8").splitlines():
            match = FENCE.match(line)
            if fence is None and match:
                fence, language, body = match.group(1), match.group(2).lower(), []
            elif (
                fence is not None
                and line.strip().startswith(fence[0] * len(fence))
                and (line.strip().strip(fence[0]) == "")
            ):
                doc.blocks.append((language, "\n".join(body) + "\n"))
                fence = None
            elif fence is not None:
                body.append(line)
            else:
                doc.prose.append(line)
        assert fence is None, f"{path}: a code fence is never closed"
        return doc

    def anchors(self) -> set[str]:
        """Heading ids as GitHub makes them (duplicates get -1, -2…), plus HTML anchors."""
        seen: dict[str, int] = {}
        anchors: set[str] = set()
        for line in self.prose:
            anchors.update(HTML_ANCHOR.findall(line))
            heading = HEADING.match(line)
            if not heading:
                continue
            slug = github_slug(heading.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
        return anchors

    def links(self) -> list[str]:
        targets: list[str] = []
        for line in self.prose:
            without_code = INLINE_CODE.sub(lambda m: "x" * len(m.group(0)), line)
            # Link text may itself be code (`[`app/x.py`](app/x.py)`): match on the line
            # with code blanked out, read the target from the same span of the real line.
            for match in INLINE_LINK.finditer(without_code):
                targets.append(line[match.start(1) : match.end(1)])
            if definition := REFERENCE_DEFINITION.match(without_code):
                targets.append(line[definition.start(1) : definition.end(1)])
            targets.extend(HTML_LINK.findall(without_code))
        return targets


def github_slug(heading: str) -> str:
    """The id GitHub gives a heading: its text, lowercased, punctuation dropped, - for spaces."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(
        ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in {"L", "N", "M"}
    )
    return kept.replace(" ", "-")


def markdown_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.md") if ".venv" not in p.relative_to(root).parts)


def dead_links(doc: Markdown, root: Path) -> list[str]:
    """Relative links of `doc` whose file (or #heading) does not exist."""
    problems = []
    for target in doc.links():
        if not target or URL_SCHEME.match(target) or target.startswith("//"):
            continue
        path_part, _, anchor = target.partition("#")
        path_part = urllib.parse.unquote(path_part)
        if not path_part:
            resolved = doc.path
        elif path_part.startswith("/"):
            resolved = root / path_part.lstrip("/")
        else:
            resolved = doc.path.parent / path_part
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif (
            anchor
            and resolved.suffix == ".md"
            and urllib.parse.unquote(anchor) not in Markdown.read(resolved).anchors()
        ):
            problems.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return problems


def undefined_names(doc: Markdown) -> list[str]:
    """Every "`symbol` in [`path`](path)" whose symbol is not defined in that file."""
    problems = []
    for line_text in _joined_paragraphs(doc.prose):
        for symbol, target in NAMED_CODE.findall(line_text):
            source_path = doc.path.parent / urllib.parse.unquote(target)
            if not source_path.is_file():
                continue  # reported as a dead link
            source = source_path.read_text(encoding="utf-8")
            for part in symbol.split("."):
                definition = rf"^\s*(?:async\s+def|def|class)\s+{re.escape(part)}\b"
                assignment = rf"^\s*{re.escape(part)}\s*[:=]"
                if not re.search(f"{definition}|{assignment}", source, re.MULTILINE):
                    problems.append(f"`{symbol}` is not defined in {target}")
                    break
    return problems


def _joined_paragraphs(lines: list[str]) -> list[str]:
    """Wrapped prose joined back into one line per paragraph or list item."""
    paragraphs: list[str] = []
    for line in lines:
        starts_item = re.match(r"^\s*(?:[-*+]|\d+\.)\s", line)
        if paragraphs and line.strip() and not starts_item and paragraphs[-1]:
            paragraphs[-1] += " " + line.strip()
        else:
            paragraphs.append(line.strip())
    return paragraphs


# --- curl examples ----------------------------------------------------------------------

CURL_CALL = re.compile(r"(?:^|[\s;&|(])curl\s")
DOCUMENTED_STATUS = re.compile(r"#\s*→\s*(\d{3})\b")
SENDS_KEY = re.compile(r"""-H ["']Authorization: Bearer \$(API_KEY|OPS_API_KEY)["']""")
# The keys the examples send, and the service started for them knows.
EXAMPLE_KEYS = {
    "API_KEY": "docs-client-key-0123456789abcdef",
    "OPS_API_KEY": "docs-ops-key-0123456789abcdef",
}


@dataclass(frozen=True)
class Example:
    """One shell block holding `curl` calls, with the status each call must answer."""

    source: str
    script: str
    statuses: tuple[int, ...]


def logical_lines(script: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for line in script.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def curl_examples(doc: Markdown, root: Path) -> tuple[list[Example], list[str]]:
    """The shell blocks of `doc` that call curl, and what breaks the conventions above."""
    examples: list[Example] = []
    problems: list[str] = []
    source = str(doc.path.relative_to(root))
    for language, body in doc.blocks:
        if language not in SHELL_LANGUAGES:
            continue
        statuses = []
        for line in logical_lines(body):
            if line.lstrip().startswith("#"):
                continue
            calls = len(CURL_CALL.findall(line))
            if not calls:
                continue
            where = f"{source}: {line.strip()[:100]}"
            status = DOCUMENTED_STATUS.search(line)
            if calls > 1:
                problems.append(f"{where}: one curl call per command, please")
            elif not status:
                problems.append(f"{where}: end the command with its status, e.g. `# → 200`")
            elif DOCS_BASE_URL not in line:
                problems.append(f"{where}: address the service as {DOCS_BASE_URL}")
            elif (
                not SENDS_KEY.search(line)
                and f"{DOCS_BASE_URL}/health" not in line
                and status.group(1) != "401"
            ):
                problems.append(f'{where}: send a key, -H "Authorization: Bearer $API_KEY"')
            else:
                statuses.append(int(status.group(1)))
        if statuses:
            examples.append(Example(source, body, tuple(statuses)))
    return examples, problems


# Each curl call records the status of its last response (after any 100 Continue).
SHELL_PRELUDE = r"""set -eo pipefail
curl() {
  local headers status rc=0
  headers=$(mktemp)
  command curl --dump-header "$headers" "$@" || rc=$?
  status=$(grep -E '^HTTP/' "$headers" | tail -n 1 | cut -d ' ' -f 2 || true)
  rm -f "$headers"
  echo "${status:-000}" >> "$CURL_STATUS_LOG"
  return "$rc"
}
"""


def run_example(example: Example, base_url: str, workdir: Path) -> None:
    status_log = workdir / "statuses.log"
    status_log.write_text("")
    script = SHELL_PRELUDE + example.script.replace(DOCS_BASE_URL, base_url)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env={**os.environ, "CURL_STATUS_LOG": str(status_log), **EXAMPLE_KEYS},
        capture_output=True,
        text=True,
        timeout=120,
    )
    answered = tuple(int(s) for s in status_log.read_text().split())
    if result.returncode != 0 or answered != example.statuses:
        pytest.fail(
            f"example in {example.source} (exit {result.returncode}):\n{example.script}\n"
            f"documented statuses {list(example.statuses)}, answered {list(answered)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )


# --- Running the rendered service -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def require_redis() -> None:
    """Skip without Redis, like the integration tier; fail instead under REQUIRE_SERVICES=1."""
    parsed = urllib.parse.urlsplit(REDIS_URL)
    if answers(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        return
    message = f"Redis is not reachable at {parsed.hostname}:{parsed.port}"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


class Services:
    """Processes of the rendered service, stopped (and their logs shown) at the end."""

    def __init__(self, project: Path, env: dict[str, str], logs: Path) -> None:
        self.project, self.env, self.logs = project, env, logs
        self.python = str(project / ".venv" / "bin" / "python")
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                [self.python, *args],
                cwd=self.project,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append((name, process))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_until(self, what: str, check: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for name, process in self.processes:
                if process.poll() is not None:
                    pytest.fail(f"{name} exited early:\n{self.log(name)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not ready in {timeout}s\n{self.all_logs()}", pytrace=False)
            time.sleep(0.1)

    def all_logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-4000:]}" for name, _ in self.processes)

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _, process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def healthy(base_url: str) -> bool:
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base_url}/health"],
        capture_output=True,
        text=True,
    )
    return result.stdout == "200"


@pytest.fixture
def running_service(
    request: pytest.FixtureRequest, template_snapshot: Path, tmp_path: Path
) -> Iterator[tuple[Path, str, Services]]:
    """The richest render of a backend, running for real on loopback."""
    combo: Combo = richest(request.param)
    celery = combo.answers["task_backend"] == "celery"
    if celery:
        require_redis()
    project = render(template_snapshot, tmp_path / "project", combo.answers)
    sync_project(project)
    (tmp_path / "logs").mkdir()

    unique = uuid.uuid4().hex[:8]
    env = {
        **project_env(project),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",  # logs are read while the processes run
        # As deployed: keys required, /metrics behind an ops key.
        "ENVIRONMENT": "production",
        "API_KEYS": EXAMPLE_KEYS["API_KEY"],
        "OPS_API_KEYS": EXAMPLE_KEYS["OPS_API_KEY"],
        "METRICS_REQUIRE_KEY": "true",
    }
    smtp_port = free_port()
    if "email" in combo.answers["scenarios"]:
        env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    if celery:
        # A queue and cache keys of their own: parallel runs share the Redis.
        env.update(CELERY_BROKER_URL=REDIS_URL, CELERY_QUEUE=f"docs-{unique}")
        env.update(CACHE_URL=REDIS_URL, CACHE_KEY_PREFIX=f"docs-{unique}:")

    services = Services(project, env, tmp_path / "logs")
    try:
        if "email" in combo.answers["scenarios"]:
            services.start("smtp", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}")
            services.wait_until("SMTP sink", lambda: answers("127.0.0.1", smtp_port))
        if celery:
            services.start(
                "worker",
                *("-m", "celery", "-A", "app.worker", "worker", "--pool", "prefork"),
                *("--concurrency", "1", "--loglevel", "INFO", "--without-gossip"),
                "--without-mingle",
            )
            services.wait_until("celery worker", lambda: "ready." in services.log("worker"))
        port = free_port()
        services.start(
            "api",
            *("-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)),
        )
        base_url = f"http://127.0.0.1:{port}"
        services.wait_until("the API", lambda: healthy(base_url))
        yield project, base_url, services
    finally:
        services.stop()
    shutil.rmtree(project)


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
