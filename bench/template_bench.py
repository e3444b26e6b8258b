"""How fast the template renders and goes green: `python3 dev.py bench [--matrix] [--smoke]`.

Prints a table and, as its last line, one JSON object:
- render time of the richest combination: median of CLI `copier copy` runs and of
  in-process `run_copy` calls;
- time to green for one combination per backend: render + `uv sync` (warm cache) + its
  default test tier;
- with --matrix, the wall time of the whole matrix (tests/test_matrix.py, one xdist
  worker per core).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import (  # noqa: E402
    QUESTIONS,
    choice_values,
    project_env,
    render,
    richest,
    tool,
)


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cli_data(answers: dict) -> list[str]:
    args = []
    for key, value in answers.items():
        text = "[" + ", ".join(value) + "]" if isinstance(value, list) else str(value)
        args += ["--data", f"{key}={text.lower() if isinstance(value, bool) else text}"]
    return args


def check(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"`{' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="renders per median")
    parser.add_argument("--matrix", action="store_true", help="also time the whole matrix")
    parser.add_argument("--smoke", action="store_true", help="one render each, no test runs")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    work = Path(tempfile.mkdtemp(prefix="template-bench-"))
    template = work / "template-src"  # a copy without git, as the matrix renders it
    shutil.copytree(ROOT / "template", template / "template")
    shutil.copy2(ROOT / "copier.yml", template / "copier.yml")
    answers = richest("celery").answers

    cli, inproc = [], []
    command = [sys.executable, "-m", "copier", "copy", "--quiet", "--defaults", *cli_data(answers)]
    for i in range(runs):
        destination = work / f"cli-{i}"
        cli.append(timed(lambda d=destination: check([*command, str(template), str(d)], work)))
        inproc.append(timed(lambda i=i: render(template, work / f"api-{i}", answers)))
    files = sum(1 for p in (work / "api-0").rglob("*") if p.is_file())

    green: dict[str, float] = {}
    if not args.smoke:
        for backend in choice_values(QUESTIONS["task_backend"]):
            project = work / f"green-{backend}"
            env = project_env(project)

            def to_green(project: Path = project, backend: str = backend, env=env) -> None:
                render(template, project, richest(backend).answers)
                check([tool("uv"), "sync", "--quiet"], project, env)
                check(
                    [tool("uv"), "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider"],
                    project,
                    env,
                )

            green[backend] = timed(to_green)

    matrix = None
    if args.matrix:
        matrix = timed(
            lambda: check(
                [sys.executable, "-m", "pytest", "tests/test_matrix.py", "-q", "-n", "auto"],
                ROOT,
                {**os.environ},
            )
        )

    result = {
        "machine_cores": os.cpu_count(),
        "rendered_files": files,
        "render_cli_median_s": round(statistics.median(cli), 3),
        "render_in_process_median_s": round(statistics.median(inproc), 3),
        **{f"time_to_green_{backend}_s": round(t, 1) for backend, t in green.items()},
        "matrix_wall_s": round(matrix, 1) if matrix is not None else None,
    }
    print(f"richest combination, {files} files, {os.cpu_count()} cores")
    print(f"  render, copier CLI     median of {runs}: {result['render_cli_median_s']:.2f} s")
    print(
        f"  render, in-process     median of {runs}: {result['render_in_process_median_s']:.2f} s"
    )
    for backend, seconds in green.items():
        print(f"  time to green, {backend:17} {seconds:.1f} s (render + uv sync + default tests)")
    if matrix is not None:
        print(f"  whole matrix           {matrix:.0f} s")
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
