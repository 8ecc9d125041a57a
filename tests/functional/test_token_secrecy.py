"""Tokens are secrets: none of them may appear in a log record, whatever the request does."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from webtest import TestApp


def test_tokens_never_reach_the_logs(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Good tokens, a wrong one, and a request that fails inside: no token appears in any log record."""
    caplog.set_level(logging.DEBUG)
    warehouse = db.add_warehouse()
    wrong = "Bearer wrong-token-0123456789"
    testapp.get(f"/api/warehouses/{warehouse.code}", headers=viewer, status=200)
    testapp.get(f"/api/warehouses/{warehouse.code}", headers={"Authorization": wrong}, status=401)
    testapp.post_json("/api/warehouses", {"code": "bad code"}, headers=operator, status=400)
    testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation"}, headers=operator, status=202)

    logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    for secret in (operator["Authorization"], viewer["Authorization"], wrong):
        assert secret.split()[1] not in logged
