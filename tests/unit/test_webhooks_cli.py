"""``warehouse-webhooks``: add, list, deliveries and delete print JSON; bad input is one line on
stderr, exit status 2, and nothing written."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

INI = """\
[app:main]
use = egg:warehouse
sqlalchemy.url = sqlite:///%(here)s/hooks.sqlite
celery.broker_url = memory://localhost/
celery.result_backend = embedded://
warehouse.tokens = operator:op viewer:vw
"""
PUBLIC_URL = "https://93.184.216.34/hooks"


def webhooks(ini: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warehouse.scripts.webhooks", str(ini), *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def ini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hooks-cli") / "hooks.ini"
    path.write_text(INI)
    for module, args in (("initialize_db", []), ("seed", ["--warehouse", "hooked", "--products", "3"])):
        done = subprocess.run([sys.executable, "-m", f"warehouse.scripts.{module}", str(path), *args],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    return path


def subscriptions_in(ini: Path) -> int:
    with sqlite3.connect(ini.parent / "hooks.sqlite") as db:
        return db.execute("SELECT count(*) FROM webhook_subscriptions").fetchone()[0]


def test_add_list_deliveries_and_delete(ini: Path) -> None:
    added = webhooks(ini, "add", PUBLIC_URL, "--events", "run.succeeded, run.failed", "--warehouse", "hooked")
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["secret"].startswith("whsec_")
    assert (created["url"], created["events"], created["warehouse"]) == (PUBLIC_URL, ["run.succeeded", "run.failed"], "hooked")

    listed = webhooks(ini, "list")
    assert listed.returncode == 0 and created["secret"] not in listed.stdout
    assert created["id"] in [each["id"] for each in json.loads(listed.stdout)["webhooks"]]
    shown = webhooks(ini, "deliveries", str(created["id"]))
    assert (shown.returncode, json.loads(shown.stdout)) == (0, {"deliveries": []})

    deleted = webhooks(ini, "delete", str(created["id"]))
    assert (deleted.returncode, json.loads(deleted.stdout)) == (0, {"deleted": created["id"]})
    assert created["id"] not in [each["id"] for each in json.loads(webhooks(ini, "list").stdout)["webhooks"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "http://10.0.0.5/x", "--events", "run.failed"], "url points at a private address (10.0.0.5)"),
        (["add", "http://localhost:8080/", "--events", "run.failed"], "loopback"),
        (["add", "ftp://93.184.216.34/", "--events", "run.failed"], "http or https"),
        (["add", PUBLIC_URL, "--events", "run.exploded,run.failed"], "'run.exploded'"),
        (["add", PUBLIC_URL, "--events", ","], "at least one event type"),
        (["add", PUBLIC_URL], "--events"),
        (["add", PUBLIC_URL, "--events", "run.failed", "--warehouse", "nowhere"], "no warehouse with code 'nowhere'"),
        (["delete", "987654"], "no webhook subscription with id 987654"),
        (["delete", "abc"], "'abc' is not an id"),
        (["deliveries", "-1"], "is not an id"),
        (["teleport"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_on_stderr_exit_2_and_nothing_written(ini: Path, args: list[str], message: str) -> None:
    before = subscriptions_in(ini)

    failed = webhooks(ini, *args)

    assert failed.returncode == 2
    assert message in failed.stderr and failed.stderr.count("\n") == 1, failed.stderr
    assert failed.stdout == ""
    assert subscriptions_in(ini) == before
