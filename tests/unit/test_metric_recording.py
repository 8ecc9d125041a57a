"""What the code records comes out under the names, kinds and labels warehouse/metrics/specs.py lists
(the README's tables and the Grafana dashboard's test go by that list)."""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from warehouse.metrics import recording
from warehouse.metrics.specs import CARRIER_OUTCOMES, NODE, SPECS, WEBHOOK_OUTCOMES


def exposed() -> dict[str, object]:
    text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_every_figure_a_process_records_is_listed_as_it_comes_out() -> None:
    recording.chunk_ended("valuation", "done", 0.02, items_done=3, items_failed=1)
    recording.chunk_skipped()
    for outcome in CARRIER_OUTCOMES:
        with recording.carrier_call() as call:
            call["outcome"] = outcome
    for outcome in WEBHOOK_OUTCOMES:
        recording.webhook_attempted(outcome)
    recording.http_request("api.run", "GET", 200, 0.003)

    families = exposed()

    for spec in SPECS:
        if spec.served_by != NODE and not spec.name.startswith("warehouse_http_"):
            continue  # read from the ledger and the broker at scrape time (tests/functional/test_metrics.py)
        family = families[spec.name.removesuffix("_total")]
        assert family.type == spec.kind, spec.name
        names = {sample.name for sample in family.samples}
        assert names <= set(spec.sample_names()), (spec.name, names)
        labelled = {key for sample in family.samples for key in sample.labels if key != "le"}
        assert labelled == set(spec.labels), spec.name


def test_a_call_that_raises_counts_as_no_answer_and_leaves_nothing_in_flight() -> None:
    def count(outcome: str) -> float:
        return prometheus_client.REGISTRY.get_sample_value("warehouse_carrier_calls_total", {"outcome": outcome}) or 0.0

    before = count("no_answer")
    try:
        with recording.carrier_call():
            raise TimeoutError("no answer")
    except TimeoutError:
        pass

    assert count("no_answer") == before + 1
    assert prometheus_client.REGISTRY.get_sample_value("warehouse_carrier_in_flight") == 0


def test_unknown_methods_are_one_label_value() -> None:
    recording.http_request("unmatched", "BREW", 405, 0.001)
    assert prometheus_client.REGISTRY.get_sample_value(
        "warehouse_http_requests_total", {"route": "unmatched", "method": "other", "status": "405"}
    ) >= 1


def test_threads_that_record_first_at_once_make_the_metrics_once() -> None:
    """A chunk's carrier threads all record their first call together (a metric registered twice
    raises): in a fresh process, so that nothing has made them yet."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import threading\n"
        "from warehouse.metrics import recording\n"
        "start = threading.Barrier(32)\n"
        "errors = []\n"
        "def call():\n"
        "    start.wait()\n"
        "    try:\n"
        "        with recording.carrier_call() as c: c['outcome'] = 'sold'\n"
        "    except Exception as e: errors.append(repr(e))\n"
        "threads = [threading.Thread(target=call) for _ in range(32)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(errors or 'ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "ok"
