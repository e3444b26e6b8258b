"""copier.yml: defaults, validators, the answers file, and a real interactive session."""

import keyword
import os
import shutil
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from tests.conftest import BASE_ANSWERS, COPIER_YML, QUESTIONS, ROOT, choice_values, render


def test_reserved_names_match_this_python() -> None:
    expected = {name for name in sys.stdlib_module_names if not name.startswith("_")}
    expected |= {word for word in keyword.kwlist if word.islower()}

    assert set(yaml.safe_load(QUESTIONS["python_reserved_names"]["default"])) >= expected


def test_scenarios_default_to_every_implemented_one() -> None:
    assert QUESTIONS["scenarios"]["default"] == choice_values(QUESTIONS["scenarios"])


def test_template_needs_no_trust() -> None:
    config = yaml.safe_load(COPIER_YML.read_text())

    assert not {"_tasks", "_migrations", "_jinja_extensions"} & set(config)


def test_structural_questions_are_never_hidden_behind_when() -> None:
    # An unasked answer is not stored, and `copier update` would silently revert it.
    hidden = [name for name, q in QUESTIONS.items() if "when" in q]

    assert hidden == ["python_reserved_names", "dependency_names"]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_name": "  "}, "Type a name for the service"),
        ({"project_slug": "My Service"}, "is not a valid slug"),
        ({"project_slug": "my_service"}, "is not a valid slug"),
        ({"project_slug": "9lives"}, "is not a valid slug"),
        ({"project_slug": "double--dash"}, "is not a valid slug"),
        ({"project_slug": "json"}, 'shadows the Python keyword or standard-library module "json"'),
        (
            {"project_slug": "class"},
            'shadows the Python keyword or standard-library module "class"',
        ),
        ({"project_slug": "test-support"}, None),
        ({"project_slug": "fastapi"}, '"fastapi" is the name of a package the service installs'),
        ({"project_slug": "starlette"}, "pick another name, for example: starlette-service"),
        ({"project_slug": "email"}, "pick another name, for example: email-service"),
        ({"author_email": "not-an-email"}, "is not an email address: type one like"),
        ({"author_email": "two@@example.com"}, "is not an email address"),
    ],
)
def test_bad_answers_are_refused_with_what_to_type_instead(
    template_snapshot: Path, tmp_path: Path, answers: dict[str, str], message: str | None
) -> None:
    destination = tmp_path / "project"
    if message is None:  # a near miss that must be accepted
        render(template_snapshot, destination, {**BASE_ANSWERS, **answers})
        assert (destination / "app" / "main.py").exists()
        return

    with pytest.raises(ValueError, match="Validation error") as refused:
        render(template_snapshot, destination, {**BASE_ANSWERS, **answers})

    assert message in str(refused.value)
    assert not (destination / "app").exists()


def test_slug_defaults_to_a_valid_form_of_the_name(template_snapshot: Path, tmp_path: Path) -> None:
    project = render(
        template_snapshot, tmp_path / "p", {**BASE_ANSWERS, "project_name": "Órders & Billing API"}
    )

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["project_slug"] == "rders-billing-api"


def test_answers_file_records_every_structural_answer_and_nothing_else(
    template_snapshot: Path, tmp_path: Path
) -> None:
    project = render(template_snapshot, tmp_path / "p", BASE_ANSWERS)

    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())

    asked = {name for name, q in QUESTIONS.items() if q.get("when") is not False}
    assert asked <= set(recorded)
    assert "python_reserved_names" not in recorded
    assert not [key for key in recorded if any(s in key for s in ("password", "secret", "token"))]


def test_cli_copy_with_defaults_renders_without_trust(tmp_path: Path) -> None:
    destination = tmp_path / "cli"
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "copier",
            "copy",
            "--defaults",
            "-d",
            "project_name=Cli Service",
            str(ROOT),
            str(destination),
        ],
        encoding="utf-8",
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 0, child.before
    assert (destination / "app" / "main.py").exists()


def test_new_user_answers_the_interactive_prompts(tmp_path: Path) -> None:
    """Drive the real `copier copy` prompts through a terminal, typing like a person."""
    if shutil.which("git") is None:
        pytest.skip("copier needs git to read a template from a repository")
    destination = tmp_path / "typed"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "copier", "copy", str(ROOT), str(destination)],
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
        env={**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"},
    )
    child.expect("Human name of the service")
    child.sendline("Typed Service")
    child.expect("Distribution and directory name")
    child.send("\x15bad slug\r")  # Ctrl-U clears the suggested slug
    child.expect("is not a valid slug")  # refused: the prompt says why and asks again
    child.send("\x15typed-service\r")
    child.expect("One sentence saying what the service does")
    child.sendline("")
    child.expect("Author or team name")
    child.send("\x15Ada\r")
    child.expect("Author contact email")
    child.send("\x15ada@example.com\r")
    child.expect("Which background-work scenarios")
    child.sendline("")  # keep the default selection
    child.expect("Where background work runs")
    child.sendline("")
    child.expect("Add a Dockerfile")
    child.sendline("n")
    child.expect("Add a GitHub Actions workflow")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 0, child.before
    answers = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    assert answers["project_slug"] == "typed-service"
    assert answers["author_email"] == "ada@example.com"
    assert answers["include_docker"] is False
    assert not (destination / "Dockerfile").exists()
    assert (destination / ".github" / "workflows" / "ci.yml").exists()
