"""xAPI catch-up: how long a backlog takes to drain once the LRS comes back.

    .venv/bin/python bench/xapi_catchup.py --statements 10000 --down-seconds 20

The real background loop (`XapiDelivery.start()`) runs on a SQLite outbox while the LRS is
down (nothing listens on its port): every statement is tried, fails and backs off with its own
randomised delay. Then Ralph starts on that port; the clock runs from its first answer until
the outbox holds no pending statement. Target: 10 000 statements within 30 s. Afterwards the
LRS is asked for every statement, to check that each arrived exactly once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fixtures_ralph import RALPH_PASSWORD, RALPH_USER, Ralph, ensure_ralph  # noqa: E402
from vidfarm.config import Settings  # noqa: E402
from vidfarm.db import make_engine, make_session_factory, migrate  # noqa: E402
from vidfarm.models import XapiStatement  # noqa: E402
from vidfarm.xapi.delivery import XapiDelivery  # noqa: E402
from vidfarm.xapi.outbox import enqueue  # noqa: E402
from xapi_batching import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--down-seconds", type=float, default=20.0)
    args = parser.parse_args()
    python = ensure_ralph()
    with tempfile.TemporaryDirectory(prefix="vidfarm-xapi-catchup-") as tmp:
        workdir = Path(tmp)
        ralph = Ralph(python, workdir / "ralph")  # its port is chosen, nothing listens yet
        settings = Settings(
            data_dir=workdir / "data",
            xapi_enabled=True,
            xapi_lrs_url=ralph.url,
            xapi_lrs_login=RALPH_USER,
            xapi_lrs_password=RALPH_PASSWORD,
            poll_seconds=0.2,
        )
        engine = make_engine(settings.resolved_database_url)
        migrate(engine)
        sessions = make_session_factory(engine)
        with sessions() as session:
            ids = enqueue(session, build(args.statements))

        def pending() -> int:
            with sessions() as session:
                return int(
                    session.scalar(select(func.count()).where(XapiStatement.state == "pending"))
                    or 0
                )

        delivery = XapiDelivery(sessions, settings)
        delivery.start()
        time.sleep(args.down_seconds)  # the outage itself: the loop tries and backs off
        print(f"LRS down for {args.down_seconds:.0f} s: {pending()} pending", flush=True)
        ralph.start()
        started = time.perf_counter()
        try:
            shown = started
            while left := pending():
                if time.perf_counter() - shown >= 10:
                    shown = time.perf_counter()
                    print(f"  {shown - started:.0f} s: {left} pending", flush=True)
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
            delivery.stop()
            with ralph.client() as client:
                counts = Counter(s["id"] for s in client.all_statements())
        finally:
            ralph.stop()
        if set(counts) != set(ids) or set(counts.values()) != {1}:
            raise SystemExit("the LRS does not hold each statement exactly once")
        rate = args.statements / elapsed
        print(f"drained {args.statements} statements in {elapsed:.1f} s ({rate:.0f}/s)")


if __name__ == "__main__":
    main()
