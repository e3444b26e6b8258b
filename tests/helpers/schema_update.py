"""Projects rendered from main before migrations, used with rows, then updated with `copier update`."""

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import COPIER_YML, ROOT, project_tool
from tests.helpers.update import edit, git, snapshot_template

# Landed revisions of main from before migrations, oldest first: 4d1ee14 made `users`
# without welcome_email_sending_at, no item_writes, and request_records' index on route
# alone; 36f0514 and a2b0a35 (the last before migrations) made today's tables.
PRE_MIGRATION_REVISIONS = ("4d1ee14", "36f0514", "a2b0a35")
ALL_SCENARIOS = ["email", "embeddings", "request_logging", "cache_updates"]

# Run inside the project with its own Python: the service started in-process (lifespan
# included), then every scenario's endpoints, over HTTP only, so the same script drives
# the old release and today's. `seed` writes rows to every table and remembers what it
# read; `check` reads them back, writes new ones, and fails on any 5xx.
SERVICE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from fastapi.testclient import TestClient
from app.main import app

phase, state_file = sys.argv[1], Path(sys.argv[2])
scenarios = set(sys.argv[3].split(","))
state = json.loads(state_file.read_text()) if state_file.exists() else {}
seen = []

def same(old, now):
    # Each old field reads back the same; old releases wrote timestamps without a zone (UTC).
    from datetime import datetime, timezone
    def value(key, v):
        if key.endswith("_at") and isinstance(v, str):
            parsed = datetime.fromisoformat(v)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        return v
    assert {k: value(k, now[k]) for k in old} == {k: value(k, v) for k, v in old.items()}, (old, now)

def call(method, path, expect=None, **kwargs):
    response = client.request(method, path, **kwargs)
    seen.append(f"{method} {path} {response.status_code}")
    assert response.status_code < 500, f"{method} {path}: {response.status_code} {response.text}"
    if expect is not None:
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
    return response

with TestClient(app) as client:
    call("GET", "/health", 200)
    if phase == "seed":
        if "email" in scenarios:
            user = call("POST", "/users", json={"email": "old@example.com", "name": "Old"}).json()
            state["user"] = call("GET", f"/users/{user['id']}", 200).json()
        if "embeddings" in scenarios:
            document = call("POST", "/documents", json={"title": "Old", "text": "kept words " * 50}).json()
            for _ in range(200):  # embedded in the background
                state["document"] = call("GET", f"/documents/{document['id']}", 200).json()
                if state["document"]["status"] in ("ready", "failed"):
                    break
                time.sleep(0.05)
            assert state["document"]["status"] == "ready", state["document"]
        if "request_logging" in scenarios:
            call("POST", "/conversations/old/messages", json={"role": "user", "content": "hello"})
            state["messages"] = call("GET", "/conversations/old/messages", 200).json()["items"]
        if "cache_updates" in scenarios:
            item = call("POST", "/items", 201, json={"name": "Old", "price": "12.50"}).json()
            call("PUT", f"/items/{item['id']}", 200, json={"name": "Older", "price": "13.00"})
            state["item"] = {k: v for k, v in call("GET", f"/items/{item['id']}", 200).json().items()}
            call("GET", "/items/stats", 200)
    else:
        assert client.get("/health").json()["components"].get("schema") == "ok"
        if "email" in scenarios:
            old = state["user"]
            now = call("GET", f"/users/{old['id']}", 200).json()
            same(old, now)
            call("POST", "/users", json={"email": "new@example.com", "name": "New"})
            assert call("POST", "/users", json={"email": "old@example.com", "name": "Old"}).status_code == 409
        if "embeddings" in scenarios:
            old = state["document"]
            now = call("GET", f"/documents/{old['id']}", 200).json()
            same(old, now)
            hits = call("POST", "/documents/search", 200, json={"query": "kept words"}).json()
            assert hits["results"], hits
            call("POST", "/documents", json={"title": "New", "text": "new words " * 50})
        if "request_logging" in scenarios:
            messages = call("GET", "/conversations/old/messages", 200).json()["items"]
            for old, now in zip(state["messages"], messages, strict=False):
                same(old, now)
            assert len(messages) >= len(state["messages"]), messages
            call("POST", "/conversations/old/messages", json={"role": "user", "content": "again"})
            assert call("GET", "/logs/requests", 200).json()["total"] > 0
            call("GET", "/logs/stats", 200)
        if "cache_updates" in scenarios:
            old = state["item"]
            now = call("GET", f"/items/{old['id']}", 200).json()
            same(old, now)
            call("PUT", f"/items/{old['id']}", 200, json={"name": "Newer", "price": "14.00"})
            call("POST", "/items", 201, json={"name": "New", "price": "1.00"})
            call("GET", "/items/stats", 200)
state_file.write_text(json.dumps(state))
print("\n".join(seen))
"""


def fetch_history_if_shallow() -> None:
    """A shallow clone (`git clone --depth 1`) lacks the old revisions: fetch them, once."""
    with (ROOT / ".git" / "history-fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers must not fetch into one repo at once
        shallow = subprocess.run(
            ["git", "rev-parse", "--is-shallow-repository"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if shallow.stdout.strip() == "true":
            subprocess.run(["git", "fetch", "-q", "--unshallow"], cwd=ROOT, capture_output=True)


def history_repo(repo: Path) -> list[str]:
    """A template repository: a tag per pre-migration revision of main, then today's as v1.0.0."""
    fetch_history_if_shallow()
    git(repo.parent, "init", "-q", str(repo))
    tags = []
    for number, revision in enumerate(PRE_MIGRATION_REVISIONS, start=1):
        for old in ("template", "copier.yml"):
            if (repo / old).is_dir():
                shutil.rmtree(repo / old)
        archive = subprocess.run(
            ["git", "archive", revision, "copier.yml", "template"],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        if archive.returncode:
            pytest.fail(f"main's revision {revision} is not in this clone (fetch its history)")
        subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"main at {revision}")
        tags.append(f"v0.0.{number}")
        git(repo, "tag", tags[-1])
    snapshot_template(repo)
    assert (repo / "copier.yml").read_bytes() == COPIER_YML.read_bytes()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "today's template")
    git(repo, "tag", "v1.0.0")
    return tags


def use_service(project: Path, phase: str, database: Path, scenarios: list[str]) -> str:
    """Start the project's service on `database` and drive every scenario's endpoints."""
    env = {
        "DATABASE_URL": f"sqlite:///{database}",
        "ENVIRONMENT": "development",
        "API_KEYS": "",
        "OPS_API_KEYS": "",
        "JOB_MAX_ATTEMPTS": "1",  # no SMTP server here: the welcome email fails at once
        "SMTP_TIMEOUT_SECONDS": "2",
        "RATE_LIMIT": "100000/second",
        "LOG_LEVEL": "WARNING",
    }
    state = database.with_suffix(".json")
    served = project_tool(
        project,
        "python",
        "-c",
        SERVICE_SCRIPT,
        phase,
        str(state),
        ",".join(scenarios),
        env=env,
    )
    # What running the project leaves (uv.lock, the ignored data/) is the user's to commit.
    git(project, "add", "-A")
    git(project, "commit", "-qm", f"used the service ({phase})", "--allow-empty")
    return served


# A template release that adds a column to a scenario's table, as docs/releasing.md says.
ITEMS_MODEL = "{% if 'cache_updates' in scenarios %}cache_updates{% endif %}/models.py"
SKU_REVISION = '''"""`items.sku`: the stock-keeping unit, optional."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.core.migrate import refuse_unless_null

revision: str = "cache_updates_0003"
down_revision: str | None = "cache_updates_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("sku", sa.String(length=64), nullable=True))


def downgrade() -> None:
    refuse_unless_null("items", "sku")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("sku")
'''


def release_items_sku(repo: Path) -> None:
    features = repo / "template/app/features"
    edit(
        features / ITEMS_MODEL,
        "    version: Mapped[int] = mapped_column(default=1)\n",
        "    version: Mapped[int] = mapped_column(default=1)\n"
        "    sku: Mapped[str | None] = mapped_column(String(64))\n",
    )
    migrations = features / ITEMS_MODEL.replace("models.py", "migrations")
    (migrations / "cache_updates_0003_items_sku.py").write_text(SKU_REVISION)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "release: items.sku")
    git(repo, "tag", "v1.1.0")


def columns(database: Path, table: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(database) as connection:
        return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


def alembic_check(project: Path, database: Path) -> str:
    return project_tool(project, "alembic", "check", env={"DATABASE_URL": f"sqlite:///{database}"})


def dump(value: object) -> str:
    return json.dumps(value, indent=1, default=str)
