"""Pod's dressing and studio payloads, as its code sends them, read into one model."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from fixtures_media import MakeMedia, video_args
from vidfarm.errors import InvalidParameters
from vidfarm.media.compose import Composition, Corner, Cut, Dressing, Layout, Studio, compose
from vidfarm.media.pod_dressing import (
    RemoteDressing,
    dressing_from_celery,
    dressing_from_runner,
    parse_dressing_input,
)
from vidfarm.media.pod_studio import (
    cut_from_smil,
    parse_subtime,
    studio_from_celery,
    studio_from_mediapackage,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Pod's MEDIA_ROOT, with a watermark and two credit videos (contents do not matter here)."""
    for name in ("files/u/logo.png", "videos/h/intro.mp4", "videos/h/outro.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def to_json(root: Path, **changes: Any) -> dict[str, Any]:
    """`pod/dressing/models.py` Dressing.to_json(): watermark and opening credits, no ending."""
    payload: dict[str, Any] = {
        "id": 3,
        "title": "Université",
        "owners": [1],
        "users": [],
        "allow_to_groups": [],
        "watermark": "/media/files/u/logo.png",
        "watermark_path": str(root / "files/u/logo.png"),
        "position": "Bottom left",
        "position_orig": "bottom_left",
        "opacity": 60,
        "opening_credits": "0007-intro",
        "opening_credits_video": "videos/h/intro.mp4",
        "opening_credits_video_duration": 1,
        "opening_credits_video_hasaudio": False,
        "ending_credits": None,
        "ending_credits_video": "",
        "ending_credits_video_duration": None,
        "ending_credits_video_hasaudio": None,
    }
    return {**payload, **changes}


def pod_input(*paths: Path | str) -> str:
    """`get_dressing_input` with FFMPEG_DRESSING_INPUT = ' -i "%(input)s"'."""
    return "".join(' -i "%(input)s"' % {"input": path} for path in paths)  # noqa: UP031


def test_celery_dressing_maps_pods_fields(root: Path) -> None:
    text = pod_input(root / "files/u/logo.png", root / "videos/h/intro.mp4")
    dressing = dressing_from_celery(to_json(root), text, [root])
    assert dressing is not None and dressing.watermark is not None
    assert dressing.watermark.image == root / "files/u/logo.png"
    assert dressing.watermark.position is Corner.BOTTOM_LEFT
    assert dressing.watermark.opacity == 60
    assert dressing.opening == root / "videos/h/intro.mp4"
    assert dressing.ending is None


def test_celery_without_dressing_is_none(root: Path) -> None:
    assert dressing_from_celery(None, "", [root]) is None
    with pytest.raises(InvalidParameters, match="without json_dressing"):
        dressing_from_celery(None, pod_input(root / "files/u/logo.png"), [root])


def test_celery_ending_only_and_a_label_position(root: Path) -> None:
    payload = to_json(
        root,
        watermark=None,
        watermark_path="",
        opening_credits=None,
        opening_credits_video="",
        ending_credits="0008-outro",
        ending_credits_video="videos/h/outro.mp4",
        position="En haut à gauche",
        position_orig=None,
    )
    dressing = dressing_from_celery(payload, pod_input(root / "videos/h/outro.mp4"), [root])
    assert dressing == Dressing(ending=root / "videos/h/outro.mp4")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (' -f lavfi -i "anullsrc"', "only -i <path>"),
        (' -i "{root}/files/u/logo.png"; rm -rf /', "pairs"),
        (' -i "{root}/files/u/logo.png"; rm -rf', "not an existing file"),
        (' -i "{root}/files/u/logo.png" -vf x', "only -i <path>"),
        (' -i "{root}/files/u/logo.png" -i "{root}/videos/h/intro.mp4" -y', "pairs"),
        (' -i "/etc/passwd"', "outside the allowed folders"),
        (' -i "{root}/../../etc/passwd"', "outside the allowed folders"),
        (' -i "{root}/videos/h/missing.mp4"', "not an existing file"),
        (' -i "{root}/videos/h"', "not an existing file"),
        (' -i "concat:{root}/a|{root}/b"', "not an absolute path"),
        (' -i "http://evil.example/x.png"', "not an absolute path"),
        (' -i "{root}/files/u/logo.png', "not Pod's -i list"),
    ],
)
def test_dressing_input_refuses_anything_but_files_under_the_roots(
    root: Path, text: str, match: str
) -> None:
    with pytest.raises(InvalidParameters, match=match):
        parse_dressing_input(text.replace("{root}", str(root)), [root])


def test_dressing_input_refuses_a_symlink_out_of_the_roots(
    root: Path, tmp_path_factory: Any
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.mp4"
    outside.write_bytes(b"x")
    (root / "videos/h/link.mp4").symlink_to(outside)
    with pytest.raises(InvalidParameters, match="outside"):
        parse_dressing_input(pod_input(root / "videos/h/link.mp4"), [root])
    with pytest.raises(InvalidParameters, match="no folder is allowed"):
        parse_dressing_input(pod_input(root / "videos/h/intro.mp4"), [])


def test_celery_dressing_must_match_its_inputs(root: Path) -> None:
    logo, intro = root / "files/u/logo.png", root / "videos/h/intro.mp4"
    with pytest.raises(InvalidParameters, match="1 file"):
        dressing_from_celery(to_json(root), pod_input(logo), [root])
    with pytest.raises(InvalidParameters, match="does not match"):
        dressing_from_celery(to_json(root), pod_input(intro, logo), [root])  # swapped
    with pytest.raises(InvalidParameters, match="position"):
        dressing_from_celery(to_json(root, position_orig="center"), pod_input(logo, intro), [root])
    with pytest.raises(InvalidParameters, match="opacity"):
        dressing_from_celery(to_json(root, opacity=150), pod_input(logo, intro), [root])
    with pytest.raises(InvalidParameters, match="json_dressing"):
        dressing_from_celery(["not", "a", "dict"], "", [root])  # type: ignore[arg-type]


def runner_dressing() -> str:
    """`runner_manager.py` `_attach_dressing_info`: URLs, the raw position, opacity as text."""
    return json.dumps(
        {
            "watermark": "http://pod.example.org/media/files/u/logo.png",
            "watermark_position": "top_left",
            "watermark_opacity": "80",
            "opening_credits": "0007-intro",
            "opening_credits_video": "http://pod.example.org/media/videos/h/intro.mp4",
            "opening_credits_video_duration": "1",
            "ending_credits": "0008-outro",
            "ending_credits_video": "http://pod.example.org/media/videos/h/outro.mp4",
            "ending_credits_video_duration": "1",
        }
    )


def test_runner_dressing_names_what_to_fetch_then_resolves(root: Path) -> None:
    remote = dressing_from_runner(runner_dressing())
    assert remote is not None
    assert remote.urls() == {
        "watermark": "http://pod.example.org/media/files/u/logo.png",
        "opening": "http://pod.example.org/media/videos/h/intro.mp4",
        "ending": "http://pod.example.org/media/videos/h/outro.mp4",
    }
    files = {
        "watermark": root / "files/u/logo.png",
        "opening": root / "videos/h/intro.mp4",
        "ending": root / "videos/h/outro.mp4",
    }
    dressing = remote.resolve(files)
    assert dressing.watermark is not None
    assert (dressing.watermark.position, dressing.watermark.opacity) == (Corner.TOP_LEFT, 80)
    assert (dressing.opening, dressing.ending) == (files["opening"], files["ending"])
    with pytest.raises(InvalidParameters, match="ending was not fetched"):
        remote.resolve({k: v for k, v in files.items() if k != "ending"})


def test_runner_dressing_accepts_esup_runners_own_keys() -> None:
    payload = {"watermark": "https://x.org/wm.png", "watermark_position_orig": "bottom_right"}
    assert dressing_from_runner(json.dumps(payload)) == RemoteDressing(
        watermark_url="https://x.org/wm.png", position=Corner.BOTTOM_RIGHT
    )
    assert dressing_from_runner("") is None
    assert dressing_from_runner("{}") is None


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("{not json", "not JSON"),
        ('["a"]', "JSON object"),
        ('{"watermark": "file:///etc/passwd"}', "http"),
        ('{"opening_credits_video": "/srv/pod/media/intro.mp4"}', "http"),
        ('{"watermark": "https://x.org/a.png", "watermark_opacity": "8O"}', "opacity"),
        ('{"watermark": "https://x.org/a.png", "watermark_position": "middle"}', "position"),
    ],
)
def test_runner_dressing_refuses_malformed_values(value: str, match: str) -> None:
    with pytest.raises(InvalidParameters, match=match):
        dressing_from_runner(value)


def test_celery_studio_maps_pods_arguments(root: Path) -> None:
    (root / "studio").mkdir()
    for name in ("presenter.webm", "presentation.webm"):
        (root / "studio" / name).write_bytes(b"x")
    videos = [
        {"type": "presenter/source", "src": str(root / "studio/presenter.webm")},
        {"type": "presentation/source", "src": str(root / "studio/presentation.webm")},
    ]
    studio, cut = studio_from_celery(videos, "-ss 1.5 -to 10.25 ", "piph", [root])
    assert studio == Studio(
        presentation=root / "studio/presentation.webm",
        presenter=root / "studio/presenter.webm",
        layout=Layout.PIPH,
    )
    assert cut == Cut(start=1.5, end=10.25)
    only, no_cut = studio_from_celery(videos[:1], "", "mid", [root])
    assert (only.presentation, only.presenter, no_cut) == (None, Path(videos[0]["src"]), None)
    with pytest.raises(InvalidParameters, match="presenter 'side'"):
        studio_from_celery(videos, "", "side", [root])
    with pytest.raises(InvalidParameters, match="outside"):
        studio_from_celery([{"type": "presenter/source", "src": "/etc/passwd"}], "", "mid", [root])
    with pytest.raises(InvalidParameters, match="studio: no"):
        studio_from_celery([{"type": "other/source", "src": "/x"}], "", "mid", [root])


@pytest.mark.parametrize(
    ("subtime", "expected"),
    [
        ("", None),
        ("-ss 12.5 ", Cut(start=12.5)),
        ("-to 30 ", Cut(start=0.0, end=30.0)),
        ("-ss 00:01:02.5 -to 00:02:00 ", Cut(start=62.5, end=120.0)),
    ],
)
def test_subtime_forms_pod_sends(subtime: str, expected: Cut | None) -> None:
    assert parse_subtime(subtime) == expected


@pytest.mark.parametrize(
    "subtime", ["-ss 1 -i /etc/passwd", "-ss 1; rm -rf /", "-ss 1 -ss 2", "-t 5", "-ss abc"]
)
def test_subtime_refuses_anything_else(subtime: str) -> None:
    with pytest.raises(InvalidParameters, match="subtime"):
        parse_subtime(subtime)


MEDIAPACKAGE = """<?xml version="1.0" encoding="UTF-8"?>
<mediapackage xmlns="http://mediapackage.opencastproject.org" id="e1" presenter="pipb">
  <media>
    <track type="presenter/source" id="t1"><mimetype>video/webm</mimetype>
      <url>https://pod.example.org/media/opencast-files/e1/presenter.webm</url></track>
    <track type="presentation/source" id="t2"><mimetype>video/webm</mimetype>
      <url>https://pod.example.org/media/opencast-files/e1/presentation.webm</url></track>
  </media>
  <metadata>
    <catalog type="smil/cutting" id="c1"><mimetype>text/xml</mimetype>
      <url>https://pod.example.org/media/opencast-files/e1/cutting.smil</url></catalog>
  </metadata>
</mediapackage>"""


def test_runner_studio_reads_the_mediapackage(root: Path) -> None:
    remote = studio_from_mediapackage(MEDIAPACKAGE, {"rendition": "{}"})
    assert remote.layout is Layout.PIPB
    assert remote.smil_url == "https://pod.example.org/media/opencast-files/e1/cutting.smil"
    assert set(remote.urls()) == {"presenter", "presentation"}
    assert studio_from_mediapackage(MEDIAPACKAGE, {"presenter": "mid"}).layout is Layout.MID
    files = {"presenter": root / "a", "presentation": root / "b"}
    assert remote.resolve(files) == Studio(
        presentation=root / "b", presenter=root / "a", layout=Layout.PIPB
    )
    smil = (
        '<smil xmlns="http://www.w3.org/ns/SMIL"><body><par>'
        '<video clipBegin="1.5s" clipEnd="12.25s" src="x"/></par></body></smil>'
    )
    assert cut_from_smil(smil) == Cut(start=1.5, end=12.25)


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        ('<!DOCTYPE m [<!ENTITY a "aaaa">]><mediapackage>&a;</mediapackage>', "DTD"),
        ("<mediapackage><media>", "not XML"),
        ("<html/>", "not an Opencast mediapackage"),
        (MEDIAPACKAGE.replace("https://pod.example.org", "file://"), "http"),
        (MEDIAPACKAGE.replace('presenter="pipb"', 'presenter="big"'), "presenter"),
    ],
)
def test_runner_studio_refuses_bad_mediapackages(xml: str, match: str) -> None:
    with pytest.raises(InvalidParameters, match=match):
        studio_from_mediapackage(xml, {})


def test_a_celery_payload_composes_end_to_end(make_media: MakeMedia, media_dir: Path) -> None:
    """From Pod's exact kwargs to the ffmpeg inputs and the composed duration."""
    main = make_media("pod_main.mp4", *video_args(duration=2.0))
    intro = make_media("pod_intro.mp4", *video_args("160x120", 30, 1.0, audio=False))
    logo = make_media("pod_logo.png", "-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1")
    payload = to_json(
        media_dir, watermark_path=str(logo), opening_credits_video="pod_intro.mp4", opacity=100
    )
    dressing = dressing_from_celery(payload, pod_input(logo, intro), [media_dir])
    composed = compose(Composition(main=main, dressing=dressing))
    assert composed.duration == pytest.approx(3.0, abs=0.04)
    assert shlex.join(composed.inputs).count(" -i ") == 2
    assert composed.inputs[-2:] == ["-i", f"file:{intro.resolve()}"]
    assert (composed.width, composed.height, composed.audio) == (320, 180, "[ca]")
