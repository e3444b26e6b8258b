"""The generated CI workflow runs every service the generated integration tests require.

Under `REQUIRE_SERVICES=1` (which the workflow sets) a missing service fails the tests
instead of skipping them, so a service missing from the workflow fails every CI run.
"""

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUESTIONS, choice_values, render, richest

BACKENDS = choice_values(QUESTIONS["task_backend"])
SCENARIOS = choice_values(QUESTIONS["scenarios"])
# Each scenario alone, none and all: the workflow's services vary with the backend and
# with single scenarios (the cache needs Redis).
SELECTIONS = [[scenario] for scenario in SCENARIOS] + [[], SCENARIOS]
CASES = [(backend, selection) for backend in BACKENDS for selection in SELECTIONS]

# A literal first argument of `require(...)`, the integration tier's "this service must answer".
REQUIRED = re.compile(r"\brequire\(\s*\"([^\"]+)\"")
# The service of the workflow that provides what the tests call by each name.
SERVICE_OF = {"PostgreSQL": "postgres", "Redis": "redis", "RabbitMQ": "rabbitmq"}


def required_by_tests(project: Path) -> set[str]:
    return {
        name
        for path in (project / "tests").rglob("*.py")
        for name in REQUIRED.findall(path.read_text())
    }


@pytest.mark.parametrize(
    ("backend", "scenarios"),
    CASES,
    ids=[f"{backend}-{'+'.join(selection) or 'none'}" for backend, selection in CASES],
)
def test_workflow_has_a_service_for_everything_the_integration_tests_require(
    backend: str, scenarios: list[str], template_snapshot: Path, tmp_path: Path
) -> None:
    answers = {**richest(backend).answers, "scenarios": scenarios, "include_docker": False}
    project = render(template_snapshot, tmp_path / "project", answers)

    required = required_by_tests(project)
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    services = set(workflow["jobs"]["test"]["services"])

    assert "PostgreSQL" in required  # the names really are read from the tests
    unknown = required - SERVICE_OF.keys()
    assert not unknown, f"tests require {unknown}: add them to SERVICE_OF and to ci.yml.jinja"
    missing = {SERVICE_OF[name] for name in required} - services
    assert not missing, f"ci.yml has no service {missing}, which the integration tests require"
