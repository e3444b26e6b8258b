"""`dev.py new` as a newcomer runs it: a machine with Python, pip and git, and no uv."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def path_without_uv() -> str:
    """This PATH less every directory holding a `uv` (our .venv's bin among them)."""
    kept = [
        folder
        for folder in os.environ["PATH"].split(os.pathsep)
        if folder and not (Path(folder) / "uv").exists()
    ]
    return os.pathsep.join(kept)


def newcomer_env(home: Path) -> dict[str, str]:
    """No uv on PATH, no virtualenv, and git as on a new machine: no identity configured."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("UV_", "GIT_", "VIRTUAL_ENV", "PYTEST_", "MYPY_"))
    }
    # uv keeps its cache where it always is: the test is about PATH, not the network.
    if "UV_CACHE_DIR" in os.environ:
        env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]
    return {
        **env,
        "PATH": path_without_uv(),
        "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),  # empty: no user.name, no user.email
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def test_new_project_is_committed_and_its_printed_next_step_works_without_uv(
    tmp_path: Path,
) -> None:
    env = newcomer_env(tmp_path)
    python = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shutil.which("uv", path=env["PATH"]) is None
    assert Path(python).parent != Path(sys.executable).parent  # not our .venv's Python
    destination = tmp_path / "my-service"

    new = subprocess.run(
        ["python3", str(ROOT / "dev.py"), "new", str(destination), "--data", "scenarios=[]"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert new.returncode == 0, new.stderr
    # A git repository with one commit and nothing left over: `copier update` can start.
    git = ["git", "-C", str(destination)]
    log = subprocess.run([*git, "log", "--format=%s"], env=env, capture_output=True, text=True)
    assert log.stdout.splitlines() == ["Generated from the template"], log.stderr
    status = subprocess.run([*git, "status", "--porcelain"], env=env, capture_output=True)
    assert status.stdout == b""
    # The step it prints next, run as printed.
    [next_step] = [line for line in new.stderr.splitlines() if line.startswith("Next: ")]
    command = next_step.removeprefix("Next: ")
    assert command.startswith(f"cd {destination} && ")
    ran = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert " passed" in ran.stdout
