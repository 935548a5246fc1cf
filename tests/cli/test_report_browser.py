"""`clipsearch report` pages with hostile names, opened in headless Chromium.

Every value on the page is a name somebody else chose. Each field below carries payloads that
would set the title, write to the console and mark the body if any of them ran; the page's own
self-test must still run (its script is allowed by hash), its clip must still play under the
Content-Security-Policy, and at 1280 px nothing may stick out of its card or scroll sideways.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from clipsearch_cli.report import Media, render
from clipsearch_dev.media import make_video, query_image_bytes
from tests.cli.chromium import pre, run_selftest

MARK = "PWNED"


def hostile(tag: str) -> str:
    """HTML/attribute/script breakouts; no '.' so that a name's 'extension' keeps all of it."""
    act = f"document['title']='{MARK}-{tag}';console['log']('{MARK}-{tag}')"
    return (
        f'"\'><img src=x onerror="{act}"><script>{act}</script>'
        f'<svg onload="{act}"></svg></textarea></pre></title><iframe src="javascript:{act}">'
    )


LONG = "gs://" + "b" * 63 + "/" + "very-long-object-name-without-any-space-" * 12 + "end.mp4"


def outcome(status: str) -> dict[str, Any]:
    clip = {
        "rank": 1,
        "start_time": 1.0,
        "end_time": 2.5,
        "score": 0.9,
        "source": {"bucket": hostile("src-bucket"), "blob": "x", "uri": LONG + hostile("src")},
        "artifact": {
            "bucket": "r",
            "object": hostile("art-object"),
            "uri": LONG + hostile("art-uri"),
            "mode": "copy",
            "size": 1,
            "reused": False,
            "start_time": None,
            "end_time": None,
            "keyframe_snapped": False,
            "poster_uri": None,
        },
        "fetch_error": None,
        "fallback_reason": hostile("fallback"),
    }
    unplayable = {**clip, "rank": 2, "artifact": None, "fetch_error": hostile("fetch-error")}
    return {
        "schema_version": 1,
        "status": status,
        "query": {
            "bucket": "q" * 63,
            # the old MIME bug: the text after the last '.' went into the data: URI unescaped
            "object": "x" * 200 + f'/{hostile("object")}.png" onerror="{hostile("mime")}',
            "generation": "1700000000000001",
            "video_no": hostile("video-no"),
            "prompt": hostile("prompt"),
            "unique_id": hostile("unique-id"),
            "event_id": hostile("event-id"),
        },
        "clips": [clip, unplayable] if status == "success" else [],
        "error": (
            None
            if status == "success"
            else {"reason": hostile("reason"), "message": hostile("message") + LONG}
        ),
        "result_uri": LONG + hostile("result-uri"),
        "timings_ms": {"read": 1.0, "search": 1.0, "fetch": 1.0, "total": 3.0},
        "produced_at": hostile("produced-at"),
    }


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM after the page ran (and its self-test), and Chromium's console log."""
    done = run_selftest(
        page,
        tmp_path / "chromium-profile",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        budget_ms=8000,
    )
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report-media")
    make_video(folder / "v.mp4", seconds=4)
    return folder


@pytest.mark.parametrize("status", ["success", "error"])
def test_no_hostile_name_runs_script_and_the_page_still_works(media_dir, tmp_path, status):
    message = outcome(status)
    image = query_image_bytes(media_dir / "v.mp4", 1.0, fmt="PNG")
    shutil.copy(media_dir / "v.mp4", tmp_path / "v.mp4")
    media = [Media("v.mp4", None), Media(None, None)] if status == "success" else []
    page = tmp_path / "report.html"
    page.write_text(render(message, image, media), encoding="utf-8")

    dom, console = open_in_chromium(page, tmp_path)

    ran = [line for line in console.splitlines() if MARK.lower() in line.lower()]
    assert ran == [], ran
    title = dom[dom.index("<title>") + len("<title>") : dom.index("</title>")]
    assert title.startswith("clipsearch: xxx"), title  # a payload would set the whole title
    for planted in ("<iframe", "<svg", "<script>document"):
        assert planted not in dom, planted
    assert 'src="data:image/png;base64,' in dom  # MIME from the bytes, not from the name
    played = pre(dom, "selftest")  # the page's own script did run under the policy
    assert len(played) == (1 if status == "success" else 0)
    for video in played:
        assert video["error"] is None, video
        assert video["played"], video
    layout = pre(dom, "selftest-layout")
    assert layout["cards"] >= 2, layout
    assert layout["overflowing"] == [], layout
    assert layout["scrollWidth"] <= layout["innerWidth"] == 1280, layout


def test_the_policy_blocks_script_that_escaping_would_have_missed(media_dir, tmp_path):
    """The CSP on its own: a script planted after rendering (as a missed escape would) is
    refused, while the page's own self-test still runs."""
    html = render(outcome("error"), None, [])
    planted = html.replace("</body>", f"<script>document['title']='{MARK}'</script></body>")
    page = tmp_path / "planted.html"
    page.write_text(planted, encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert f"<title>{MARK}</title>" not in dom
    assert "Content Security Policy" in console
    assert pre(dom, "selftest") == []
    assert pre(dom, "selftest-layout")["overflowing"] == []
