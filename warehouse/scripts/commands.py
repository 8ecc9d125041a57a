"""What the commands that print JSON share: one-line refusals, id arguments, and the one transaction
in which each does its work."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from sqlalchemy.orm import Session, sessionmaker

from warehouse.db import transaction
from warehouse.errors import ApiError


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit status 2 (argparse's own error adds the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see {self.prog.split()[0]} --help)\n")


def whole_number(text: str) -> int:
    """A whole number, its bounds left to the checks the API makes of the same value."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def record_id(text: str) -> int:
    """The id of a row: ASCII digits, from 1 to what an INTEGER key holds."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number from 1)")
    return int(text)


def print_outcome(prog: str, session_factory: sessionmaker[Session], execute: Callable[[Session], Any]) -> int:
    """``execute(session)`` in one transaction; its document printed as JSON (exit 0), or what the
    checks refused on one line of stderr (exit 2), with nothing written."""
    try:
        with transaction(session_factory) as session:
            document = execute(session)
    except ApiError as refused:
        print(f"{prog}: error: {refused.message}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0
