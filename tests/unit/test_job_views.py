"""Job lists as the API shows them: the same views as one job at a time, in a few queries.

A page of jobs (and the event stream's changed jobs) once cost a few queries per job: the
rank, the video, the chunk summary. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.api.views import job_view, job_views
from vidfarm.models import Job, Video

Factory = sessionmaker[Session]


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def farm_of(factory: Factory, videos: int) -> None:
    """`videos` videos, each with a waiting encode (priorities differ) and a finished one;
    the first encode is chunked (two chunks)."""
    with factory() as session:
        for n in range(videos):
            video = Video(filename=f"lecture-{n}.mp4", source_key=f"sources/{n}/x.mp4")
            video.duration = 60.0
            session.add(video)
            session.commit()
            spans = [{"start_at": 0.0, "end_at": 30.0}, {"start_at": 30.0, "end_at": 60.0}]
            chunks = [{**span, "weight": 30.0} for span in spans]
            jobs.create_job(
                session, job_type="encode", video_id=video.id, priority=n % 3, max_attempts=2,
                split=jobs.Split(chunks, "encode_chunk", "stitch") if n == 0 else None,
            )  # fmt: skip
            done = jobs.create_job(
                session, job_type="transcription", video_id=video.id, max_attempts=2
            )
            session.query(Job).filter(Job.id == done.id).update({"status": "completed"})
            session.commit()


def measured(factory: Factory, limit: int) -> tuple[list[dict[str, object]], list[str]]:
    """The views of the newest `limit` jobs, as the list route reads them, and the queries
    the views cost (the list itself apart)."""
    with factory() as session:
        found = jobs.list_jobs(session, limit=limit)
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        with counted(engine) as statements:
            views = job_views(session, found)
        return views, statements


def test_a_page_of_jobs_costs_the_same_queries_as_a_few(session_factory: Factory) -> None:
    farm_of(session_factory, 20)
    _, few = measured(session_factory, 4)
    views, many = measured(session_factory, 500)
    assert len(views) == 42
    assert len(many) <= len(few) + 1 and len(many) <= 5, many  # not a few per job
    with session_factory() as session:
        for view in views:  # each is what the one-job view says (time moves on meanwhile)
            alone = job_view(session, jobs.get_job(session, str(view["id"])))
            clock = {"heartbeat_age_seconds", "news"}
            assert {k: v for k, v in view.items() if k not in clock} == {
                k: v for k, v in alone.items() if k not in clock
            }
            assert (view["rank"], view["waiting"]) == jobs.rank(session, str(view["id"]))
    ranks = sorted(int(str(v["rank"])) for v in views if v["rank"] is not None)
    assert ranks == list(range(1, 22))  # 19 waiting encodes, 2 chunks (their parent runs)
    (chunked,) = [v for v in views if "chunks" in v]
    assert [(c["type"], c["start"]) for c in chunked["chunks"]] == [  # type: ignore[attr-defined]
        ("encode_chunk", 0.0), ("encode_chunk", 30.0),
    ]  # fmt: skip
    assert {v["video_title"] for v in views} >= {"lecture-0.mp4", "lecture-19.mp4"}
