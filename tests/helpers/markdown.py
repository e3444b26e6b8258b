"""Markdown as the docs tests read it: prose, fenced blocks, links, anchors, curl examples.

Conventions the generated READMEs follow (and the docs tests enforce):

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
import subprocess
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DOCS_BASE_URL = "http://127.0.0.1:8000"
SHELL_LANGUAGES = {"sh", "bash", "shell"}

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
        return cls.parse(path, path.read_text(encoding="utf-8").splitlines())

    @classmethod
    def parse(cls, path: Path, lines: list[str]) -> "Markdown":
        """`lines` of the file at `path` (all of it, or one section)."""
        doc = cls(path)
        fence: str | None = None
        language, body = "", []
        for line in lines:
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


def code_blocks(path: Path, heading: str, language: str) -> list[str]:
    """The `language` blocks of the section under the heading `heading`, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    headings: list[tuple[int, int, str]] = []  # (line, level, title), outside code blocks
    fence: str | None = None
    for number, line in enumerate(lines):
        if match := FENCE.match(line):
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not match.group(2):
                fence = None
        elif fence is None and (found := HEADING.match(line)):
            headings.append((number, len(found.group(1)), found.group(2)))
    starts = [(number, level) for number, level, title in headings if title == heading]
    assert starts, f"{path} has no heading {heading!r}"
    start, level = starts[0]
    end = next((n for n, lvl, _ in headings if n > start and lvl <= level), len(lines))
    section = Markdown.parse(path, lines[start:end])
    return [body for block_language, body in section.blocks if block_language == language]
