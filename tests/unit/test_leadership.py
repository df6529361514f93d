"""Leadership: one holder at a time; a dead holder's lock is taken over at the next ask."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from vidfarm.db import make_engine
from vidfarm.leadership import Leadership
from waiting import wait_until

HOLD = """
import sys, time
from pathlib import Path
from vidfarm.db import make_engine
from vidfarm.leadership import Leadership
leader = Leadership(make_engine(sys.argv[1]), Path(sys.argv[2]), key=int(sys.argv[3]))
print(leader.held(), flush=True)
time.sleep(600)
"""


def test_one_leader_and_takeover_when_it_dies(engine: Engine, tmp_path: Path) -> None:
    key = random.randrange(1, 2**31)  # the session's database is shared with other tests
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, str(tmp_path), str(key)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        replica = Leadership(engine, tmp_path, key=key)
        assert not replica.held()
        holder.kill()  # kill -9: no clean release
        holder.wait()
        wait_until(replica.held, 10, "the replica to take the lead over")
        other = Leadership(engine, tmp_path, key=key)
        assert not other.held()
        replica.release()
        assert other.held() and not replica.held()
        other.release()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.postgres
def test_a_leader_whose_connection_is_cut_stops_leading(postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    key = random.randrange(1, 2**31)
    leader, replica = Leadership(engine, tmp_path, key=key), Leadership(engine, tmp_path, key=key)
    assert leader.held()
    with engine.connect() as sql:
        sql.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND objid = :key"
            ),
            {"key": key},
        )
        sql.commit()
    wait_until(replica.held, 10, "the replica to lead once the server dropped the leader")
    assert not leader.held()
    replica.release()
    leader.release()
    engine.dispose()
