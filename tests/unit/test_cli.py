"""The command line as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def vidfarm(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidfarm", *args],
        env={**os.environ, "VIDFARM_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_encode_writes_the_folder_and_exits_zero(small_clip: Path, tmp_path: Path) -> None:
    result = vidfarm("encode", str(small_clip), "-o", str(tmp_path / "out"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["outputs"][0]["path"] == "master.m3u8"
    assert "real time" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "code", "line"),
    [
        (("encode", "{missing}", "-o", "{out}"), {}, 1, "missing.mp4: no such file"),
        (
            ("encode", "{clip}", "-o", "{out}", "--profile", "nope"),
            {},
            1,
            "unknown profile 'nope' (available: default)",
        ),
        (("encode", "{clip}", "-o", "{out}", "--end", "99"), {}, 1, "past the end of the media"),
        (
            ("jobs",),
            {"VIDFARM_WORKER_CONCURRENCY": "zero"},
            2,
            "invalid setting VIDFARM_WORKER_CONCURRENCY",
        ),
        (
            ("jobs",),
            {"VIDFARM_DATABASE_URL": "nosuch://db"},
            2,
            "invalid setting VIDFARM_DATABASE_URL",
        ),
        (("jobs", "--status", "lost"), {}, 1, "unknown status 'lost'"),
        (("job", "feedface"), {}, 1, "no job feedface"),
    ],
)
def test_errors_are_one_line(
    small_clip: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    env: dict[str, str],
    code: int,
    line: str,
) -> None:
    values = {
        "missing": str(tmp_path / "missing.mp4"),
        "out": str(tmp_path / "out"),
        "clip": str(small_clip),
    }
    result = vidfarm(*(a.format(**values) for a in args), tmp_path=tmp_path, **env)
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidfarm: error: "), result.stderr
    assert line in lines[0]
    assert not (tmp_path / "out").exists()


TINY_PROFILE = """name = "tiny"
preset = "ultrafast"
keyframe_interval = 2.0
segment_duration = 2.0
[[renditions]]
height = 144
min_video_bitrate = "100k"
video_bitrate = "200k"
max_video_bitrate = "400k"
audio_bitrate = "64k"
mp4 = true
"""


def test_encode_parallel_chunks_with_the_chunk_settings(hd_clip: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "profiles").mkdir(parents=True)
    (tmp_path / "data" / "profiles" / "tiny.toml").write_text(TINY_PROFILE)
    out = tmp_path / "out"
    args = ("encode", str(hd_clip), "-o", str(out), "--profile", "tiny", "--parallel", "2")
    chunk_env = {"VIDFARM_CHUNK_SECONDS": "4", "VIDFARM_CHUNK_MIN_SECONDS": "10"}
    result = vidfarm(*args, tmp_path=tmp_path, **chunk_env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["start"] for c in manifest["chunks"]] == [0, 4, 8]
    assert "3 chunks, 2 at a time" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]  # no scratch left
    again = vidfarm(*args, tmp_path=tmp_path, **chunk_env)
    assert again.returncode == 1 and "is not empty" in again.stderr
    zero = vidfarm(*args[:-1], "0", tmp_path=tmp_path)
    assert zero.returncode == 2 and "--parallel" in zero.stderr
    short = vidfarm(*args[:3], str(tmp_path / "one"), *args[4:], tmp_path=tmp_path)
    assert short.returncode == 0, short.stderr  # 12 s < the default 120 s minimum: one pass
    assert "chunks" not in json.loads((tmp_path / "one" / "manifest.json").read_text())


def test_jobs_lists_each_waiting_jobs_rank(small_clip: Path, tmp_path: Path) -> None:
    """`vidfarm jobs` ranks the waiting jobs in claim order (read once for the whole table)."""
    ids = []
    for _ in range(2):  # no server runs: they wait
        submitted = vidfarm("submit", str(small_clip), tmp_path=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        ids.append(submitted.stdout.split()[1])
    listed = vidfarm("jobs", tmp_path=tmp_path, COLUMNS="250")
    assert listed.returncode == 0, listed.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in listed.stdout.splitlines()]
    rows = {row[0]: row for row in cells if row}
    assert "1/2" in rows[ids[0]] and "2/2" in rows[ids[1]], listed.stdout
