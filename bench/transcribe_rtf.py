"""Transcription speed and memory: real-time factor on one core, peak RSS for 1 vs 30 minutes.

1. About 60 s of speech: espeak-ng (voice en-us+f2, 130 wpm) reads a fixed 15-sentence text.
   `vidfarm.transcribe.job.transcribe_file` runs in a child process pinned to one core
   (sched_setaffinity); the real-time factor is wall time / audio duration, measured after
   the model is loaded (the load is reported apart: a worker pays it once per process).
   The word error rate against the read text is reported too.
2. Peak RSS (ru_maxrss of a fresh child process) transcribing 1 minute and 30 minutes of
   generated input (a quiet hum, as in tests/unit/test_transcribe.py; optionally
   `--speech-minutes N`: the 60 s speech looped to N minutes, which takes ~N/2 minutes).

    .venv/bin/python bench/transcribe_rtf.py
    .venv/bin/python bench/transcribe_rtf.py --speech-minutes 10

Results replace the section of bench/results/transcribe.md. Needs espeak-ng (Debian).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from vidfarm.media.tools import ffmpeg_executable
from vidfarm.transcribe.captions import word_error_rate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "transcribe.md"
TEXT = (
    "the weather today is sunny and warm. please open the door and close the window. "
    "we will meet at the station at nine o'clock. the students read the book in the library. "
    "my brother works in a large hospital. can you tell me the way to the museum. "
    "the children played football in the park. she bought three apples and a loaf of bread. "
    "the train leaves from platform number two. it is raining so take your umbrella. "
    "our teacher explained the lesson very clearly. the shop closes at six in the evening. "
    "he drinks a cup of coffee every morning. they visited their grandparents last summer. "
    "the cat is sleeping on the chair near the fire. "
)


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line),
        "unknown CPU",
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"nproc {os.cpu_count()}, {model}, {memory:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def command_line() -> str:
    return " ".join([".venv/bin/python", "bench/transcribe_rtf.py", *sys.argv[1:]])


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time
    from pathlib import Path
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from vidfarm.config import Settings
    from vidfarm.transcribe.engines import borrow_engine
    from vidfarm.transcribe.job import transcribe_file
    settings = Settings(data_dir=Path(sys.argv[2]))
    started = time.monotonic()
    with borrow_engine("en", settings):
        pass
    load = time.monotonic() - started
    cpu0 = time.process_time()
    t = transcribe_file(Path(sys.argv[1]), language="en", settings=settings)
    print(json.dumps({
        "load_seconds": load,
        "wall_seconds": t.wall_seconds,
        "cpu_seconds": time.process_time() - cpu0,
        "duration": t.duration,
        "rtf": t.real_time_factor,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "text": " ".join(w.text for w in t.words),
    }))
    """
)


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True
    )


def run_child(clip: Path, work: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(clip), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech-minutes", type=int, default=0)
    args = parser.parse_args()
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is not installed: apt-get install -y espeak-ng")
    work = Path(tempfile.mkdtemp(prefix="vidfarm-bench-"))
    try:
        wav = work / "speech.wav"
        subprocess.run(
            [espeak, "-v", "en-us+f2", "-s", "130", "-g", "8", "-w", str(wav), TEXT], check=True
        )
        speech = work / "speech.m4a"
        ffmpeg("-i", str(wav), "-ac", "1", "-c:a", "aac", str(speech))
        spoken = run_child(speech, work)
        wer = word_error_rate(TEXT, str(spoken["text"]))

        rows = []
        inputs = [("hum", 1), ("hum", 30)]
        if args.speech_minutes:
            inputs += [("speech", 1), ("speech", args.speech_minutes)]
        for kind, minutes in inputs:
            clip = work / f"{kind}{minutes}.m4a"
            if kind == "hum":
                seconds = minutes * 60
                ffmpeg("-f", "lavfi", "-i", f"sine=f=50:d={seconds}",
                       "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:c=pink:a=0.002",
                       "-filter_complex", "[0]volume=0.01[s];[s][1]amix=inputs=2",
                       "-ac", "1", "-ar", "16000", "-c:a", "aac", "-b:a", "24k",
                       str(clip))  # fmt: skip
            else:
                ffmpeg("-stream_loop", "-1", "-i", str(speech), "-t", str(minutes * 60),
                       "-c:a", "aac", "-b:a", "32k", str(clip))  # fmt: skip
            measured = run_child(clip, work)
            rows.append((kind, minutes, measured))
        base = {kind: m for kind, minutes, m in rows if minutes == 1}
        table = "\n".join(
            f"| {kind} | {minutes} min | {int(m['peak_rss_kib']) / 1024:.1f} MiB | "  # type: ignore[call-overload]
            f"{100 * (int(m['peak_rss_kib']) / int(base[kind]['peak_rss_kib']) - 1):+.1f} % | "  # type: ignore[call-overload]
            f"{float(m['wall_seconds']):.1f} s |"  # type: ignore[arg-type]
            for kind, minutes, m in rows
        )
        load = os.getloadavg()
        report = f"""# Transcription benchmark

- command: `{command_line()}`
- date: {now()}
- machine: {machine()}
- load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (other work on the
  machine slows the figures down; they are upper bounds)

## Real-time factor, one core, 60 s of speech (pocketsphinx, bundled en-us model)

| audio | model load | wall | CPU (Python process) | RTF (wall) | RTF (CPU) | WER |
| --- | --- | --- | --- | --- | --- | --- |
| {float(spoken["duration"]):.1f} s | {float(spoken["load_seconds"]):.2f} s | {float(spoken["wall_seconds"]):.1f} s | {float(spoken["cpu_seconds"]):.1f} s | **{float(spoken["rtf"]):.2f}** | **{float(spoken["cpu_seconds"]) / float(spoken["duration"]):.2f}** | {wer:.2f} |

RTF = processing time / audio duration. The wall figure includes waiting for the core when
the machine is busy (see the load average); the CPU figure is the decoder process's own time
(ffmpeg decodes in its own process, not counted: a few percent of the total).

Speech: espeak-ng `-v en-us+f2 -s 130 -g 8` reading {len(TEXT.split())} words once.

## Peak RSS, 1 minute versus long input (target: within 20 %)

| input | length | peak RSS | vs 1 min | wall |
| --- | --- | --- | --- | --- |
{table}
"""  # noqa: E501
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(report)
        print(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
