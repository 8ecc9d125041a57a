"""``warehouse-schedule`` against an embedded-mode ini: JSON out, and bad input refused in one line on
stderr with exit status 2, nothing written. Called in this process (each command is a process of
its own otherwise, seconds apiece), and once as its own process. Last, the embedded default's web
app, started on the same ini, fires a due schedule with its own worker's heartbeat."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_cli import EMBEDDED_INI, run_script
from warehouse.scripts.schedule import main


@pytest.fixture(scope="module")
def ini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schedule-cli") / "embedded.ini"
    path.write_text(EMBEDDED_INI)
    assert run_script("warehouse.scripts.initialize_db", str(path)).returncode == 0
    assert run_script("warehouse.scripts.seed", str(path), "--warehouse", "cli", "--products", "5").returncode == 0
    return path


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def schedule(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def run(ini: Path, *args: str) -> Done:
        try:
            code = main([str(ini), *args])
        except SystemExit as exit_:  # argparse refusing the arguments
            code = int(exit_.code or 0)
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return run


def schedule_rows(ini: Path) -> int:
    with sqlite3.connect(ini.with_name("cli.sqlite")) as connection:
        return connection.execute("SELECT count(*) FROM schedules").fetchone()[0]


def test_add_list_pause_resume_and_delete(ini: Path, schedule) -> None:  # type: ignore[no-untyped-def]
    added = schedule(ini, "add", "cli", "valuation", "--cron", "0 6 * * *", "--timezone", "Europe/Dublin", "--chunk-size", "50")
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert (created["cron"], created["timezone"], created["chunk_size"], created["enabled"]) == ("0 6 * * *", "Europe/Dublin", 50, True)
    assert created["next_run_at"].endswith("+00:00") and created["next_run_at_local"][11:16] == "06:00"

    listed = json.loads(schedule(ini, "list", "cli").stdout)["schedules"]
    assert [item["id"] for item in listed] == [created["id"]]

    paused = json.loads(schedule(ini, "pause", str(created["id"])).stdout)
    assert (paused["enabled"], paused["next_run_at"]) == (False, None)
    resumed = json.loads(schedule(ini, "resume", str(created["id"])).stdout)
    assert resumed["enabled"] is True and resumed["next_run_at"] == created["next_run_at"]

    deleted = schedule(ini, "delete", str(created["id"]))
    assert (deleted.returncode, json.loads(deleted.stdout)) == (0, {"deleted": created["id"]})
    assert json.loads(schedule(ini, "list").stdout) == {"schedules": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "cli", "valuation", "--cron", "0 6 * *"], "cron must be five fields: minute hour day-of-month month day-of-week"),
        (["add", "cli", "valuation", "--cron", "0 6 * * *", "--timezone", "Mars/Olympus"], "timezone must be an IANA time zone name"),
        (["add", "cli", "valuation", "--cron", "0 6 * * *", "--chunk-size", "0"], "chunk_size must be from 1 to 100,000"),
        (["add", "cli", "valuation", "--cron", "0 6 * * *", "--tolerated-failure-percent", "101"], "tolerated_failure_percent must be from 0 to 100"),
        (["add", "cli", "valuation", "--cron", "0 6 * * *", "--chunk-size", "many"], "argument --chunk-size: 'many' is not a whole number"),
        (["add", "cli", "nothing", "--cron", "0 6 * * *"], "operation is not one this service knows"),
        (["add", "nowhere", "valuation", "--cron", "0 6 * * *"], "no warehouse with code 'nowhere'"),
        (["add", "cli", "valuation"], "the following arguments are required: --cron"),
        (["pause", "999"], "no schedule with id 999"),
        (["delete", "x"], "argument ID: 'x' is not an id (a whole number from 1)"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_status_2(ini: Path, schedule, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    before = schedule_rows(ini)

    done = schedule(ini, *args)

    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"warehouse-schedule: error: {message}"), done.stderr
    assert schedule_rows(ini) == before


def test_the_command_as_its_own_process(ini: Path) -> None:
    added = run_script("warehouse.scripts.schedule", str(ini), "add", "cli", "valuation", "--cron", "*/30 * * * *", "--paused")
    refused = run_script("warehouse.scripts.schedule", str(ini), "add", "cli", "valuation", "--cron", "every day")

    assert added.returncode == 0 and json.loads(added.stdout)["enabled"] is False, added.stderr
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "warehouse-schedule: error: cron must be five fields: minute hour day-of-month month day-of-week, such as '0 6 * * *'"
    )


EMBEDDED_APP = """
import json, sqlite3, sys, time
from pyramid.paster import get_app
get_app(sys.argv[1])  # the web app of `make run`, with its embedded worker: nothing else is started
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.5)
    with sqlite3.connect(sys.argv[2]) as db:
        rows = db.execute("SELECT status, scheduled_for FROM runs WHERE schedule_id = ?", (int(sys.argv[3]),)).fetchall()
    if rows and rows[0][0] == "succeeded":
        break
print(json.dumps(rows), flush=True)
import os; os._exit(0)  # the embedded worker's threads never end by themselves
"""


def test_the_embedded_default_fires_a_due_schedule_on_its_workers_heartbeat(ini: Path, schedule) -> None:  # type: ignore[no-untyped-def]
    created = json.loads(schedule(ini, "add", "cli", "valuation", "--cron", "* * * * *").stdout)
    database = ini.with_name("cli.sqlite")
    with sqlite3.connect(database) as connection:  # as if its tick had come while nothing ran
        connection.execute("UPDATE schedules SET next_run_at = '2020-01-01 00:00:00.000000' WHERE id = ?", (created["id"],))

    done = subprocess.run([sys.executable, "-c", EMBEDDED_APP, str(ini), str(database), str(created["id"])],
                          capture_output=True, text=True, timeout=120, check=False)

    [(status, scheduled_for)] = json.loads(done.stdout or "[[null, null]]") or [(None, None)]
    assert status == "succeeded", done.stderr[-3000:]
    assert scheduled_for > "2020-01-01"  # the latest due tick, not the first one missed
