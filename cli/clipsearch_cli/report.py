"""`clipsearch report`: one static HTML page for one query's outcome.

The page shows the query image (inlined), and for each clip its rank, times and score and a
`<video controls preload="metadata" poster=...>` playing the stored video over the clip's
seconds (a media fragment `#t=START,END` in the file's own time line: source time for a copied
video, shifted by `artifact.start_time` for a cut clip). The poster is the JPEG the function
stored with a cut clip (`artifact.poster_uri`); for a copied video `--embed` draws one (PyAV).

Video URLs: against the local stack, fake-gcs-server's media URL (no auth needed); against
Google Cloud, `https://storage.cloud.google.com/BUCKET/OBJECT`, which plays for a viewer signed
in to Google with read access to the results bucket. `--embed` instead downloads each video
and poster next to the page (`NAME_files/`), so the page works offline and can be shared.

Opening the page with `?selftest=1` plays every clip muted and writes what happened into
`<pre id="selftest">`, and whether anything sticks out of its card or the page scrolls sideways
into `<pre id="selftest-layout">` (used by the headless-browser tests; harmless otherwise).

Every value in the page comes from names other people chose (object, prompt, video_no, ...):
all are escaped, the image's MIME type comes from a fixed list, and a Content-Security-Policy
lets only the page's own script and style run, whatever slips through.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from clipsearch.contract import from_avro_json
from clipsearch.core.naming import result_name
from clipsearch.core.validation import EXTENSION_KINDS, sniff_image_kind
from clipsearch_cli.config import UsageError
from clipsearch_cli.context import CommandError, Context


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "report",
        help="write a static HTML page for one query's outcome",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "outcome",
        nargs="?",
        metavar="OUTCOME",
        help="outcome JSON: a file, '-' for stdin (first line), or a gs:// result URI",
    )
    parser.add_argument(
        "--query", metavar="gs://BUCKET/OBJECT[#GENERATION]", help="find the query's outcome"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="HTML file to write")
    parser.add_argument(
        "--embed", action="store_true", help="download the videos next to the page, with posters"
    )
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class Media:
    """Where the page loads one clip's video and poster from (URLs relative or absolute)."""

    video: str | None
    poster: str | None


def split_gs(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://") or "/" not in uri.removeprefix("gs://"):
        raise UsageError(f"expected gs://BUCKET/OBJECT, got {uri!r}")
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


def load_outcome(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    if (args.outcome is None) == (args.query is None):
        raise UsageError("give either OUTCOME or --query")
    if args.query is not None:
        raw = _outcome_of_query(args.query, ctx)
    elif args.outcome == "-":
        raw = sys.stdin.readline()
    elif args.outcome.startswith("gs://"):
        bucket, name = split_gs(args.outcome)
        data = ctx.storage.read(bucket, name)
        if data is None:
            raise CommandError(f"{args.outcome} does not exist")
        raw = data.decode()
    else:
        try:
            raw = Path(args.outcome).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read {args.outcome}: {error.strerror}") from None
    try:
        outcome = from_avro_json(json.loads(raw))  # plain JSON passes through unchanged
    except json.JSONDecodeError as error:
        raise CommandError(f"the outcome is not JSON: {error}") from None
    if not isinstance(outcome, dict) or "query" not in outcome or "clips" not in outcome:
        raise CommandError("the JSON is not an outcome message")
    return outcome


def _outcome_of_query(query: str, ctx: Context) -> str:
    location, _, generation_text = query.partition("#")
    bucket, name = split_gs(location)
    if generation_text:
        if not generation_text.isdigit():
            raise UsageError(f"bad generation in {query!r}")
        generation = int(generation_text)
    else:
        current = ctx.storage.stat(bucket, name)
        if current is None:
            raise CommandError(f"{location} does not exist")
        generation = current.generation
    settings = ctx.settings
    if not settings.results_bucket:
        raise UsageError("no results bucket: set CLIPSEARCH_RESULTS_BUCKET (or --env-file)")
    stored = result_name(settings.results_prefix, bucket, name, generation)
    data = ctx.storage.read(settings.results_bucket, stored)
    if data is None:
        raise CommandError(
            f"no outcome yet for {location}#{generation}"
            f" (gs://{settings.results_bucket}/{stored} does not exist)"
        )
    return data.decode()


def run(args: argparse.Namespace, ctx: Context) -> int:
    outcome = load_outcome(args, ctx)
    output: Path = args.output
    query = outcome["query"]
    image = ctx.storage.read(query["bucket"], query["object"])
    media = (
        _embed(outcome, output, ctx) if args.embed else [_remote(c, ctx) for c in outcome["clips"]]
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(outcome, image, media), encoding="utf-8")
    ctx.stdout.write(f"{output}\n")
    return 0 if outcome["status"] == "success" else 1


def _video_location(clip: dict[str, Any]) -> tuple[str, str] | None:
    if clip.get("artifact"):
        return clip["artifact"]["bucket"], clip["artifact"]["object"]
    return None


def _poster_location(clip: dict[str, Any]) -> tuple[str, str] | None:
    """The poster the function stored with a cut clip (mode clip), if any."""
    uri = (clip.get("artifact") or {}).get("poster_uri")
    if not uri or not str(uri).startswith("gs://"):
        return None
    bucket, _, name = str(uri).removeprefix("gs://").partition("/")
    return (bucket, name) if name else None


def play_range(clip: dict[str, Any]) -> tuple[float, float]:
    """The clip's seconds in the video file's own time line.

    A copied source video (mode copy) uses source time; a cut clip (mode clip) starts at
    `artifact.start_time` in the source (a keyframe at or before the hit), so shift by it.
    """
    start, end = float(clip["start_time"]), float(clip["end_time"])
    offset = (clip.get("artifact") or {}).get("start_time")
    if offset is None:
        return start, end
    return max(0.0, start - float(offset)), max(0.0, end - float(offset))


def _remote(clip: dict[str, Any], ctx: Context) -> Media:
    location = _video_location(clip)
    poster = _poster_location(clip)
    return Media(
        ctx.storage.browser_url(*location) if location else None,
        ctx.storage.browser_url(*poster) if poster else None,
    )


def _embed(outcome: dict[str, Any], output: Path, ctx: Context) -> list[Media]:
    folder = output.parent / f"{output.stem}_files"
    folder.mkdir(parents=True, exist_ok=True)
    downloaded: dict[tuple[str, str], str] = {}
    media = []
    for clip in outcome["clips"]:
        location = _video_location(clip)
        if location is None:
            media.append(Media(None, None))
            continue
        if location not in downloaded:
            local = folder / f"video-{len(downloaded) + 1}{Path(location[1]).suffix or '.mp4'}"
            ctx.storage.download(*location, local)
            downloaded[location] = local.name
        video_file = folder / downloaded[location]
        poster_file = folder / f"poster-{clip['rank']}.jpg"
        stored_poster = _poster_location(clip)
        if stored_poster is not None:
            ctx.storage.download(*stored_poster, poster_file)
        else:
            drawn = poster_jpeg(video_file, play_range(clip)[0])
            if drawn is not None:
                poster_file.write_bytes(drawn)
        media.append(
            Media(
                f"{quote(folder.name)}/{quote(video_file.name)}",
                f"{quote(folder.name)}/{quote(poster_file.name)}" if poster_file.exists() else None,
            )
        )
    return media


def poster_jpeg(video: Path, at_s: float) -> bytes | None:
    """The frame shown at `at_s`, as JPEG; None without PyAV or when nothing decodes."""
    try:
        import av  # noqa: PLC0415  (optional: only --embed posters need it)
    except ImportError:
        return None
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            if stream.time_base is None:
                return None
            container.seek(int(at_s / stream.time_base), stream=stream, backward=True)
            shown = None
            for frame in container.decode(stream):
                if frame.time is not None and frame.time > at_s + 1e-6 and shown is not None:
                    break
                shown = frame
            if shown is None:
                return None
            buffer = io.BytesIO()
            shown.to_image().save(  # type: ignore[no-untyped-call]
                buffer, format="JPEG", quality=85
            )
            return buffer.getvalue()
    except (av.FFmpegError, IndexError, OSError):
        return None


_CSS = """
body{font:15px/1.4 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;
color:#222;overflow-wrap:anywhere}
h1{font-size:1.4rem} .meta{table-layout:fixed;width:100%;border-collapse:collapse}
.meta td{padding:.1rem .8rem .1rem 0;vertical-align:top} .meta td:first-child{width:7rem}
.query img{max-width:min(24rem,100%);border:1px solid #ccc}
.clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(18rem,100%),1fr));gap:1rem}
.clip{border:1px solid #ddd;border-radius:6px;padding:.6rem;min-width:0}
.clip video{width:100%;background:#000} .error{color:#a00} .muted{color:#777}
pre{white-space:pre-wrap}
"""

_SELFTEST = """
(function(){
  if (!/[?&]selftest=1/.test(location.search)) return;
  var out = document.getElementById('selftest');
  var videos = Array.prototype.slice.call(document.querySelectorAll('video'));
  var report = videos.map(function(v){return {src:v.currentSrc||v.src,played:false,error:null,
    readyState:0,currentTime:0,duration:null,start:Number(v.dataset.start)};});
  function write(){ videos.forEach(function(v,i){ report[i].readyState=v.readyState;
    report[i].currentTime=v.currentTime; report[i].duration=isFinite(v.duration)?v.duration:null;
    if (v.error) report[i].error='media error '+v.error.code; });
    out.textContent = JSON.stringify(report); }
  videos.forEach(function(v,i){
    v.muted = true;
    v.addEventListener('timeupdate', function(){
      if (v.currentTime > report[i].start + 0.2) { report[i].played = true; write(); } });
    v.addEventListener('error', write);
    var p = v.play(); if (p) p.catch(function(e){ report[i].error = String(e); write(); });
  });
  function layout(){
    var cards = Array.prototype.slice.call(document.querySelectorAll('.clip,.meta,.query,.error'));
    var found = {scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth,
      cards: cards.length, overflowing: []};
    cards.forEach(function(card){ var box = card.getBoundingClientRect();
      [card].concat(Array.prototype.slice.call(card.querySelectorAll('*'))).forEach(function(el){
        var r = el.getBoundingClientRect(), name = el.tagName + ' in ' + card.className;
        if (r.left < box.left - 1 || r.right > box.right + 1)
          found.overflowing.push(name + ': box ' + Math.round(r.width) + ' wider than ' +
            Math.round(box.width));
        if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
          found.overflowing.push(name + ': content ' + el.scrollWidth + ' wider than ' +
            el.clientWidth); }); });
    document.getElementById('selftest-layout').textContent = JSON.stringify(found);
  }
  write(); layout(); setInterval(function(){ write(); layout(); }, 250);
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(media: list[Media]) -> str:
    """Only the page's own script and style run; media from its files, https, or the emulator.

    https: is allowed for media because storage.cloud.google.com answers with a redirect to
    another Google host; plain-http origins (the local emulator) are listed one by one.
    """
    origins = set()
    for url in [m.video for m in media] + [m.poster for m in media]:
        parts = urlsplit(url or "")
        if parts.scheme == "http" and parts.netloc:
            origins.add(f"http://{parts.netloc}")
    sources = " ".join(["'self'", "https:", *sorted(origins)])
    return (
        f"default-src 'none'; script-src {_csp_hash(_SELFTEST)}; style-src {_csp_hash(_CSS)};"
        f" img-src {sources} data:; media-src {sources}; base-uri 'none'; form-action 'none'"
    )


def render(outcome: dict[str, Any], image: bytes | None, media: list[Media]) -> str:
    """The page; every value from the message is escaped."""
    e = html.escape
    query = outcome["query"]
    title = f"clipsearch: {query['object']}"
    policy = content_security_policy(media)
    rows = [
        ("query", f"gs://{query['bucket']}/{query['object']}#{query['generation']}"),
        ("video_no", query.get("video_no") or ""),
        ("prompt", query.get("prompt") or ""),
        ("unique_id", query.get("unique_id") or ""),
        ("status", outcome["status"]),
        ("produced at", outcome.get("produced_at", "")),
        ("result", outcome.get("result_uri", "")),
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(policy)}">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        '<table class="meta">',
        *[f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in rows],
        "</table>",
        '<div class="query">',
    ]
    mime = _image_mime(query["object"], image) if image is not None else None
    if image is not None and mime is not None:
        encoded = base64.b64encode(image).decode()
        parts.append(f'<img alt="query image" src="data:{mime};base64,{encoded}">')
    elif image is not None:
        parts.append('<p class="muted">query image is not a JPEG/PNG/GIF/BMP/WEBP image</p>')
    else:
        parts.append('<p class="muted">query image not readable</p>')
    parts.append("</div>")
    if outcome["status"] != "success":
        error = outcome.get("error") or {}
        parts.append(
            f'<p class="error">error {e(str(error.get("reason")))}: '
            f"{e(str(error.get('message')))}</p>"
        )
    elif not outcome["clips"]:
        parts.append("<p>No matching clips.</p>")
    parts.append('<div class="clips">')
    for clip, where in zip(outcome["clips"], media, strict=True):
        start, end = float(clip["start_time"]), float(clip["end_time"])
        parts.append('<div class="clip">')
        parts.append(
            f"<h2>#{int(clip['rank'])} · {start:.2f}&ndash;{end:.2f} s"
            f" · score {clip['score']:.4f}</h2>"
        )
        if where.video is not None:
            poster = f' poster="{e(where.poster)}"' if where.poster else ""
            play_start, play_end = play_range(clip)
            src = f"{where.video}#t={play_start:g},{play_end:g}"
            parts.append(
                f'<video controls preload="metadata"{poster} data-start="{play_start:g}"'
                f' data-end="{play_end:g}" src="{e(src)}"></video>'
            )
        else:
            why = clip.get("fetch_error") or "no stored video"
            parts.append(f'<p class="error">not playable: {e(str(why))}</p>')
        artifact = clip.get("artifact") or {}
        notes = [str(artifact.get("uri") or ""), str((clip.get("source") or {}).get("uri") or "")]
        if clip.get("fallback_reason"):
            notes.append(f"not cut: {clip['fallback_reason']}")
        parts.append(f'<p class="muted">{"<br>".join(e(n) for n in notes if n)}</p></div>')
    parts.append("</div>")
    parts.append('<pre id="selftest"></pre>')
    parts.append('<pre id="selftest-layout"></pre>')
    parts.append(f"<script>{_SELFTEST}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _image_mime(name: str, image: bytes) -> str | None:
    """From a fixed list: what the bytes are, else what the name's extension says, else None.

    Never built from the name itself: a name is anyone's text (`x.png" onerror="...`).
    """
    kind = sniff_image_kind(image) or EXTENSION_KINDS.get(name.rsplit(".", 1)[-1].lower())
    return f"image/{kind}" if kind else None
