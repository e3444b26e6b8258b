#!/usr/bin/env python3
"""Developer entry point for this template; needs only Python 3.11+, pip and git.

    python3 dev.py new ../my-service [copier options]   render a project (default answers) as a
                                                         git repository with its first commit
    python3 dev.py test [pytest options]                 build .venv, run the whole test suite
    python3 dev.py bench [--matrix] [--smoke]            render and time-to-green figures

Both build `.venv` on first use (pip installs uv into it, uv installs the rest).
"""

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".dev-deps-installed"


def ensure_venv() -> None:
    """Create .venv with the dev dependencies, again whenever pyproject.toml changed."""
    pyproject = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    if not (BIN / "uv").exists():
        print("creating .venv …", file=sys.stderr)
        venv.create(VENV, with_pip=True, clear=True)
        run([BIN / "python", "-m", "pip", "install", "-q", "uv"])
    run([BIN / "uv", "pip", "install", "-q", "--python", BIN / "python", "--group", "dev"])
    STAMP.touch()


def run(args: list[object], **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, **kwargs)  # type: ignore[arg-type]


def env_with_venv() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # Bytecode written once is read by every later process; without it each one compiles
    # what it imports from source (seconds per process on the CI machines, which set this).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def new(args: list[str]) -> int:
    if not args or args[0].startswith("-"):
        print("usage: python3 dev.py new DESTINATION [copier options]", file=sys.stderr)
        return 2
    ensure_venv()
    destination, options = Path(args[0]).resolve(), args[1:]
    name = destination.name.replace("-", " ").replace("_", " ").title()
    command = [
        BIN / "python",
        "-m",
        "copier",
        "copy",
        "--defaults",
        "--data",
        f"project_name={name}",
    ]
    if "--interactive" in options:  # ask every question instead of taking the defaults
        options.remove("--interactive")
        command = [BIN / "python", "-m", "copier", "copy"]
    result = subprocess.run(
        [str(a) for a in [*command, *options, ROOT, destination]],
        env=env_with_venv(),
        stderr=subprocess.PIPE,
        text=True,
    )
    if result.returncode == 0:
        sys.stderr.write(result.stderr)
        committed = first_commit(destination)
        # The project's commands need uv; without it on PATH, the one in our .venv does.
        uv = "uv" if shutil.which("uv") else str(BIN / "uv")
        print(f"\nRendered {destination}; {committed}.", file=sys.stderr)
        print(f"Next: cd {destination} && {uv} run pytest", file=sys.stderr)
        if uv != "uv":
            print(
                "(uv is not on your PATH, so that is this template's own. To install it for your\n"
                " projects: https://docs.astral.sh/uv/getting-started/installation/)",
                file=sys.stderr,
            )
        return 0
    # A refused answer is a user mistake: show Copier's message, not its traceback.
    errors = [line for line in result.stderr.splitlines() if line.startswith("ValueError: ")]
    if errors:
        print("error:", errors[-1].removeprefix("ValueError: "), file=sys.stderr)
    else:
        sys.stderr.write(result.stderr)
    return result.returncode


def first_commit(destination: Path) -> str:
    """Make the render a git repository with one commit, as `copier update` needs later."""
    inside = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=destination, capture_output=True, text=True
    )
    if inside.returncode == 0:  # rendered into a repository of the user's: theirs to commit
        return f"commit it in {inside.stdout.strip()} before any `copier update`"
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    subprocess.run(["git", "add", "-A"], cwd=destination, check=True)
    env = dict(os.environ)
    has_identity = subprocess.run(
        ["git", "config", "user.email"], cwd=destination, capture_output=True
    )
    if has_identity.returncode != 0:
        # A machine where git has no identity yet: the project's author, as answered, signs it.
        answers = (destination / ".copier-answers.yml").read_text()
        for key, variables in (("author_name", "NAME"), ("author_email", "EMAIL")):
            found = re.search(rf"^{key}: (.+)$", answers, re.MULTILINE)
            value = found[1].strip().strip("'\"") if found else "Template"
            env[f"GIT_AUTHOR_{variables}"] = env[f"GIT_COMMITTER_{variables}"] = value
    subprocess.run(
        ["git", "commit", "-q", "-m", "Generated from the template"],
        cwd=destination,
        env=env,
        check=True,
    )
    return "a git repository with its first commit"


def test(args: list[str]) -> int:
    ensure_venv()
    if not any(arg == "-n" or arg.startswith(("-n", "--numprocesses")) for arg in args):
        args = ["-n", "auto", *args]  # one worker per core: the matrix is CPU-bound
    return subprocess.run(
        [str(BIN / "python"), "-m", "pytest", *args], cwd=ROOT, env=env_with_venv()
    ).returncode


def bench(args: list[str]) -> int:
    ensure_venv()
    return subprocess.run(
        [str(BIN / "python"), "bench/template_bench.py", *args], cwd=ROOT, env=env_with_venv()
    ).returncode


def main() -> int:
    commands = {"new": new, "test": test, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
