"""A `Composition` as JSON job params, and back: what crosses from an adapter to a worker.

An adapter (the runner manager) fetches Pod's dressing and studio files into storage and
writes the composition with storage keys; the worker that runs the job (in-process, a Celery
worker on another machine) turns each key back into a local file it can read. A reference is
`"source"` (the job's own source file) or a storage key.

    {"main": "source" | {"studio": {"layout": "mid", "presentation": ref, "presenter": ref}},
     "cut": {"start": 2.0, "end": 60.0} | null,
     "dressing": {"watermark": {"image": ref, "position": "top_right", "opacity": 80} | null,
                  "opening": ref | null, "ending": ref | null} | null}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidParameters
from vidfarm.media.compose import Composition, Corner, Cut, Dressing, Watermark
from vidfarm.media.studio_layout import Layout, Studio

SOURCE = "source"

Resolve = Callable[[str], Path]


def composition_from_params(
    data: object,
    resolve: Resolve,
    *,
    start: float | None = None,
    end: float | None = None,
) -> Composition:
    """Rebuild the composition; `resolve` maps each reference to a local file. A job's own
    `start`/`end` cut applies when the composition has none (the runner's `cut`)."""
    if not isinstance(data, Mapping):
        raise InvalidParameters("composition: expected an object")
    main_data = data.get("main", SOURCE)
    main: Path | Studio
    if main_data == SOURCE:
        main = resolve(SOURCE)
    elif isinstance(main_data, Mapping) and isinstance(main_data.get("studio"), Mapping):
        studio = main_data["studio"]
        main = Studio(
            presentation=_optional(studio.get("presentation"), resolve),
            presenter=_optional(studio.get("presenter"), resolve),
            layout=Layout(str(studio.get("layout") or Layout.MID.value)),
        )
    else:
        raise InvalidParameters("composition.main: expected 'source' or a studio")
    cut_data = data.get("cut")
    cut = None
    if isinstance(cut_data, Mapping):
        cut = Cut(start=float(cut_data.get("start") or 0.0), end=_number(cut_data.get("end")))
    elif start is not None or end is not None:
        cut = Cut(start=float(start or 0.0), end=end)
    return Composition(main=main, cut=cut, dressing=_dressing(data.get("dressing"), resolve))


def composition_params(
    main: str | Mapping[str, Any],
    *,
    cut: Cut | None = None,
    watermark: tuple[str, Corner, int] | None = None,
    opening: str | None = None,
    ending: str | None = None,
) -> dict[str, Any]:
    """The JSON form; `main` is SOURCE or {"studio": {...refs, "layout"}}."""
    dressing = None
    if watermark is not None or opening is not None or ending is not None:
        dressing = {
            "watermark": None
            if watermark is None
            else {"image": watermark[0], "position": watermark[1].value, "opacity": watermark[2]},
            "opening": opening,
            "ending": ending,
        }
    return {
        "main": main if isinstance(main, str) else dict(main),
        "cut": None if cut is None else {"start": cut.start, "end": cut.end},
        "dressing": dressing,
    }


def _dressing(data: object, resolve: Resolve) -> Dressing | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise InvalidParameters("composition.dressing: expected an object")
    mark = data.get("watermark")
    watermark = None
    if isinstance(mark, Mapping):
        watermark = Watermark(
            image=resolve(str(mark["image"])),
            position=Corner(str(mark.get("position") or Corner.TOP_RIGHT.value)),
            opacity=int(mark.get("opacity", 100)),
        )
    dressing = Dressing(
        watermark=watermark,
        opening=_optional(data.get("opening"), resolve),
        ending=_optional(data.get("ending"), resolve),
    )
    return None if dressing.empty else dressing


def _optional(ref: object, resolve: Resolve) -> Path | None:
    return None if ref in (None, "") else resolve(str(ref))


def _number(value: object) -> float | None:
    return None if value is None else float(str(value))
