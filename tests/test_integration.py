"""The richest combination of each backend passes its integration tier against real services."""

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import QUESTIONS, choice_values, project_tool, render, richest, sync_project


@pytest.mark.parametrize("backend", choice_values(QUESTIONS["task_backend"]))
def test_richest_combination_passes_its_integration_tier(
    backend: str, template_snapshot: Path, tmp_path: Path
) -> None:
    project = render(template_snapshot, tmp_path / "project", richest(backend).answers)
    sync_project(project)

    output = project_tool(
        project,
        "pytest",
        "-m",
        "integration",
        "-p",
        "no:cacheprovider",
        "-rs",
        env={"REQUIRE_SERVICES": os.environ.get("REQUIRE_SERVICES", "0")},
    )

    assert " passed" in output
    shutil.rmtree(project)
