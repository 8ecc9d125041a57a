"""What the browser tests share: the stage's API as scripts call it, signing in, screenshots."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

# Where the tests save the README's screenshots when asked to (`make screenshots`).
SCREENSHOTS = os.environ.get("WAREHOUSE_SCREENSHOTS")


@dataclass
class Stage:
    base_url: str
    operator: httpx.Client  # the API as an operator's script calls it, bearer token and all
    viewer: httpx.Client
    engine: Any
    log: Path

    def add_warehouse(self, products: int, negative: int = 0) -> str:
        """A new warehouse with ``products`` products, the first ``negative`` of them with a negative
        quantity on hand (what picky_valuation refuses); its code."""
        code = f"b{secrets.token_hex(4)}"
        self.operator.post("/api/warehouses", json={"code": code, "name": f"Browser {code}"}).raise_for_status()
        rows = [product(code, index, 5) for index in range(products)]
        self.operator.post(f"/api/warehouses/{code}/products", json=rows).raise_for_status()
        if negative:
            # The API refuses a negative quantity, so the bad data comes in as it would from elsewhere.
            with self.engine.begin() as connection:
                connection.execute(
                    text("UPDATE products SET qty_on_hand = -3 WHERE sku = ANY(:skus)"),
                    {"skus": [f"{code}-{index:05d}" for index in range(negative)]},
                )
        return code

    def start_run(self, code: str, operation: str, **options: Any) -> int:
        response = self.operator.post(f"/api/warehouses/{code}/runs", json={"operation": operation, **options})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.viewer.get(f"/api/runs/{run_id}")
        response.raise_for_status()
        return response.json()

    def wait_until_ended(self, run_id: int, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id))["status"] in ("pending", "running", "cancelling"):
            assert time.monotonic() < deadline, f"run {run_id} did not end in {timeout} s: {run}"
            time.sleep(0.2)
        return run


def product(code: str, index: int, qty: int) -> dict[str, Any]:
    return {"sku": f"{code}-{index:05d}", "qty_on_hand": qty, "unit_cost": "2.50", "reorder_point": 2}


def sign_in(page: Any, token: str, then: str = "/") -> None:
    """Through the form, as a person does: the page asked for comes back after it."""
    page.goto(f"/login?next={then}")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{then}")


def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)
