"""Run the fault drills of issue 18 with real processes and print the table.

    .venv/bin/python bench/drills/run.py                 # all of them (about 5 minutes)
    .venv/bin/python bench/drills/run.py --only lrs      # the drills whose key contains "lrs"

Each drill gets its own temporary folder, `vidfarm serve` on SQLite, and when it needs one a
private `redis-server` on a free port (the machine's Redis is never flushed or restarted) and
a stand-in LRS. The disk drill mounts a 60 MB tmpfs: root only, skipped with the reason
otherwise. Results and the command go to docs/operations.md by hand.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import Outcome, Workspace, make_clip

import drills

DRILLS: dict[str, Callable[[Path, Path], Outcome]] = {
    "serve-kill9": partial(drills.serve_kill, sig=signal.SIGKILL),
    "serve-sigterm": partial(drills.serve_kill, sig=signal.SIGTERM),
    "celery-worker-kill9": partial(drills.celery_worker_kill, sig=signal.SIGKILL),
    "celery-worker-sigterm": partial(drills.celery_worker_kill, sig=signal.SIGTERM),
    "control-plane-kill9": drills.control_plane_kill,
    "runner-manager-kill9": drills.runner_manager_kill,
    "redis-flush-restart": drills.redis_flush_and_restart,
    "lrs-down": drills.lrs_down,
    "upload-killed": drills.upload_killed_halfway,
    "disk-full": drills.disk_full,
}


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| drill | submitted | completed | failed | lost | doubled | recovery | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        if o.skipped:
            lines.append(f"| {o.drill} | skipped: {o.skipped} | | | | | | |")
            continue
        recovery = "-" if o.recovery_seconds is None else f"{o.recovery_seconds:.1f} s"
        lines.append(
            f"| {o.drill} | {o.submitted} | {o.completed} | {o.failed} | {o.lost} | "
            f"{o.doubled} | {recovery} | {'; '.join(o.notes)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the drills whose key contains this")
    parser.add_argument("--keep", action="store_true", help="keep each drill's folder")
    args = parser.parse_args()
    chosen = {k: v for k, v in DRILLS.items() if args.only in k}
    clips = Path(tempfile.mkdtemp(prefix="vidfarm-drill-clips-"))
    make_clip(clips / "short.mp4", 4)
    make_clip(clips / "long.mp4", 20)
    outcomes = []
    for key, drill in chosen.items():
        space = Workspace(keep=args.keep)
        started = time.monotonic()
        print(f"drill {key} in {space.path} ...", flush=True)
        try:
            outcome = drill(clips, space.path)
        except Exception as error:  # a drill that breaks is a row, not the end of the run
            outcome = Outcome(key, notes=[f"drill error: {type(error).__name__}: {error}"])
        finally:
            space.cleanup()
        print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
        outcomes.append(outcome)
    if not args.keep:
        shutil.rmtree(clips, ignore_errors=True)
    print()
    print(table(outcomes))
    bad = any(o.lost or (o.doubled and o.unit == "jobs") for o in outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
