"""State transitions of runs and chunks, as SQL against the ledger tables, one module per phase:

- ``planning``: a run recorded, then cut into chunk rows;
- ``claims``: a chunk task taking hold of its chunk (or leaving it alone);
- ``outcomes``: the chunk's work and outcome, fenced by its attempt number;
- ``finishing``: the run's result and terminal status, written once;
- ``control``: cancel and resume;
- ``redrive``: an ended run's failed chunks put back to pending, to be done again in the same run;
- ``retention``: the chunk rows and item failures of runs that ended long ago, removed.

Every function takes a session whose transaction the caller owns (a request's, or a task's), so what a
function changes is committed or rolled back together with the caller's work.
"""

from .claims import ChunkLost, ClaimedChunk, claim_chunk, claim_pending_chunk, skip_chunk
from .control import ResumePlan, RunEnded, cancel_run, lock_run, prepare_resume, release_abandoned_chunks, touch_run
from .finishing import FinaliseResult, decide_status, finalise_run
from .outcomes import do_chunk, fail_chunk
from .planning import ActiveRunExists, active_run_id, chunk_bounds, create_run, pending_chunks, plan_run, without_jit
from .redrive import (
    AnotherRunActive,
    DetailsPurged,
    NothingToRedrive,
    RedrivePlan,
    RedriveRefused,
    RunActive,
    RunCancelled,
    prepare_redrive,
)
from .shared import ChunkBounds, exceeds_threshold, utcnow

__all__ = [
    "ActiveRunExists",
    "AnotherRunActive",
    "ChunkBounds",
    "ChunkLost",
    "ClaimedChunk",
    "DetailsPurged",
    "FinaliseResult",
    "NothingToRedrive",
    "RedrivePlan",
    "RedriveRefused",
    "ResumePlan",
    "RunActive",
    "RunCancelled",
    "RunEnded",
    "active_run_id",
    "cancel_run",
    "chunk_bounds",
    "claim_chunk",
    "claim_pending_chunk",
    "create_run",
    "decide_status",
    "do_chunk",
    "exceeds_threshold",
    "fail_chunk",
    "finalise_run",
    "lock_run",
    "pending_chunks",
    "plan_run",
    "prepare_redrive",
    "prepare_resume",
    "release_abandoned_chunks",
    "skip_chunk",
    "touch_run",
    "utcnow",
    "without_jit",
]
