"""warehouse/run_status.py: the status answer kept for a fraction of a second, and forgotten on demand."""

from __future__ import annotations

from typing import Any

import pytest
from pyramid.config import Configurator

from warehouse.run_status import SETTING, RunStatusCache, includeme


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Answers ``{"id": run_id, "version": n}``, n counting the loads."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.loads = 0

    def __call__(self) -> dict[str, Any]:
        self.loads += 1
        return {"id": self.run_id, "version": self.loads}


def test_off_loads_every_time() -> None:
    cache, load = RunStatusCache(0), Loader(7)
    assert [cache.get(7, load)["version"] for _ in range(3)] == [1, 2, 3]


def test_a_repeat_within_the_time_is_served_from_memory_and_one_after_it_is_loaded() -> None:
    clock = Clock()
    cache, load = RunStatusCache(0.5, timer=clock), Loader(7)
    assert cache.get(7, load)["version"] == 1
    clock.now += 0.4
    assert cache.get(7, load)["version"] == 1
    clock.now += 0.2  # 0.6 s after the load
    assert cache.get(7, load)["version"] == 2
    assert load.loads == 2


def test_runs_are_kept_apart() -> None:
    cache, seven, eight = RunStatusCache(10, timer=Clock()), Loader(7), Loader(8)
    assert cache.get(7, seven) == {"id": 7, "version": 1}
    assert cache.get(8, eight) == {"id": 8, "version": 1}
    assert cache.get(7, seven) == {"id": 7, "version": 1}


def test_forget_makes_the_next_answer_fresh() -> None:
    cache, load = RunStatusCache(10, timer=Clock()), Loader(7)
    cache.get(7, load)
    cache.forget(7)
    cache.forget(99)  # nothing kept for it: no error
    assert cache.get(7, load)["version"] == 2


def test_a_failed_load_keeps_nothing() -> None:
    cache, load = RunStatusCache(10, timer=Clock()), Loader(7)

    def broken() -> dict[str, Any]:
        raise LookupError("no such run")

    with pytest.raises(LookupError):
        cache.get(7, broken)
    assert cache.get(7, load)["version"] == 1


@pytest.mark.parametrize(("value", "kept"), [(None, False), ("0", False), ("0.5", True)])
def test_the_setting_turns_it_on(value: str | None, kept: bool) -> None:
    config = Configurator(settings={} if value is None else {SETTING: value})
    includeme(config)
    cache, load = config.registry["run_status_cache"], Loader(1)
    cache.get(1, load)
    cache.get(1, load)
    assert load.loads == (1 if kept else 2)


def test_a_negative_time_is_refused() -> None:
    with pytest.raises(ValueError, match=SETTING):
        includeme(Configurator(settings={SETTING: "-1"}))


def test_while_one_request_loads_the_next_answer_the_others_get_the_last() -> None:
    clock = Clock()
    cache = RunStatusCache(0.5, timer=clock)
    cache.get(7, lambda: "first")
    clock.now += 1  # stale now
    seen_meanwhile = []

    def slow_load() -> str:
        # Another request arrives during this load: it is answered the last answer, loads nothing.
        seen_meanwhile.append(cache.get(7, lambda: pytest.fail("a second load during the first")))
        seen_meanwhile.append(cache.peek(7))
        return "second"

    assert cache.get(7, slow_load) == "second"
    assert seen_meanwhile == ["first", "first"]
    assert cache.peek(7) == "second"


def test_a_stale_answer_with_no_load_going_is_not_peeked() -> None:
    clock = Clock()
    cache = RunStatusCache(0.5, timer=clock)
    cache.get(7, lambda: "first")
    clock.now += 1
    assert cache.peek(7) is None  # the tween lets the view load it


def test_a_failed_reload_lets_the_next_request_load_again() -> None:
    clock = Clock()
    cache, load = RunStatusCache(0.5, timer=clock), Loader(7)
    cache.get(7, load)
    clock.now += 1

    def broken() -> dict[str, Any]:
        raise ConnectionError("database gone")

    with pytest.raises(ConnectionError):
        cache.get(7, broken)
    assert cache.peek(7) is None
    assert cache.get(7, load)["version"] == 2
