"""The foreign corpus: MP4 files made by the ffmpeg CLI (and our re-layout tool), not by us.

Each recipe is an ffmpeg command line (or a re-layout of another recipe's output). Files are
small (320x180, 25 fps, 12-16 s, 2 s GOPs) and cached by a hash of the recipe and the ffmpeg
version under `.cache/corpus/` (override with CLIPSEARCH_CORPUS_CACHE), so a session makes
each file once. Encoders used (Debian's ffmpeg 5.1): libx264, libx265, libsvtav1,
libvpx-vp9, aac, libopus, libmp3lame.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import av

from tests.corpus.relayout import relayout, step_back_tfdt

GENERATOR_VERSION = 1
# GStreamer re-muxes an ffmpeg-made file's H.264 and AAC (no encoder needed): qtdemux, the
# parsers, then the muxer under test (plugins-good: qtdemux, mp4mux, qtmux, aacparse;
# plugins-bad: h264parse).
MP4_MUXER = "mp4-muxer@5.2.2"  # npm: the muxer of browser (WebCodecs) recording pipelines
GST_REMUX = (
    "filesrc location={base} ! qtdemux name=d  d.video_0 ! queue ! h264parse ! {mux} name=m "
    "! filesink location={out}  d.audio_0 ! queue ! aacparse ! m."
)
FPS = 25
GOP_S = 2.0
SECONDS = 12
ROOT = Path(__file__).resolve().parents[2]


def _video(seconds: int = SECONDS) -> tuple[str, ...]:
    return ("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}:duration={seconds}")


def _audio(seconds: int = SECONDS, formula: str = "0.4*sin(2*PI*(300+30*t)*t)") -> tuple[str, ...]:
    # A chirp: every audio packet differs, so the oracle can tell where a packet came from.
    return ("-f", "lavfi", "-i", f"aevalsrc=exprs={formula}:sample_rate=48000:duration={seconds}")


X264 = (
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-pix_fmt",
    "yuv420p",
    "-x264-params",
    f"keyint={int(FPS * GOP_S)}:min-keyint={int(FPS * GOP_S)}:scenecut=0",
)
AAC = ("-c:a", "aac", "-b:a", "64k")
BASE = (*_video(), *_audio(), *X264, *AAC)
# ~11 MB in 16 s (film grain at a fixed QP): over the 8 MiB some fragmented paths read whole
LARGE = (
    *_video(16),
    *_audio(16),
    "-vf",
    "noise=alls=12:allf=t",
    *X264,
    "-qp",
    "18",
    *AAC,
)


@dataclass(frozen=True)
class Recipe:
    kind: str
    what: str
    args: tuple[str, ...] = ()  # ffmpeg arguments; "{base}" is the base recipe's file
    base: str | None = None
    relayout: dict[str, object] = field(default_factory=dict)  # relayout() keywords
    suffix: str = ".mp4"
    malformed: str = ""  # why this file is broken as ffmpeg writes it (else it decodes cleanly)
    gst: str = ""  # a gst-launch-1.0 pipeline muxing {base}'s streams into {out}
    browser: dict[str, object] = field(default_factory=dict)  # mp4-muxer (npm) options

    def key(self) -> str:
        """Hash of everything that determines the file (including its base's)."""
        parts = {
            "recipe": asdict(self),
            "base": RECIPES[self.base].key() if self.base else None,
            "ffmpeg": _ffmpeg_version(),
            "generator": GENERATOR_VERSION,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _r(kind: str, what: str, *args: str, **kw: object) -> Recipe:
    return Recipe(kind, what, tuple(args), **kw)  # type: ignore[arg-type]


_LIST = [
    # plain layouts
    _r("h264_aac_moov_at_end", "x264 (B-frames) + AAC, moov at the end (ffmpeg default)", *BASE),
    _r("h264_aac_faststart", "x264 + AAC, -movflags +faststart", *BASE, "-movflags", "+faststart"),
    _r("mov_quicktime", "x264 + AAC in a QuickTime .mov (brand qt)", *BASE, suffix=".mov"),
    _r(
        "mov_timecode",
        "QuickTime .mov with a tmcd timecode track (as cameras write)",
        *BASE,
        "-timecode",
        "01:00:00:00",
        suffix=".mov",
    ),
    _r(
        "audio_first_track",
        "the audio track before the video track",
        *_video(),
        *_audio(),
        "-map",
        "1:a",
        "-map",
        "0:v",
        *X264,
        *AAC,
    ),
    # codecs
    _r(
        "hevc_hvc1",
        "libx265 -tag:v hvc1 + AAC, faststart",
        *_video(),
        *_audio(),
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "keyint=50:min-keyint=50:scenecut=0:log-level=error",
        "-tag:v",
        "hvc1",
        *AAC,
        "-movflags",
        "+faststart",
    ),
    _r(
        "av1_svt",
        "AV1 (libsvtav1) + AAC",
        *_video(),
        *_audio(),
        "-c:v",
        "libsvtav1",
        "-preset",
        "12",
        "-g",
        "50",
        "-pix_fmt",
        "yuv420p",
        *AAC,
    ),
    _r(
        "vp9_opus",
        "VP9 (libvpx-vp9) + Opus",
        *_video(),
        *_audio(),
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-g",
        "50",
        "-b:v",
        "300k",
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
    ),
    _r(
        "hevc_hev1",
        "libx265 (tag hev1, ffmpeg's default) + AAC, moov at the end",
        *_video(),
        *_audio(),
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "keyint=50:min-keyint=50:scenecut=0:log-level=error",
        *AAC,
    ),
    _r(
        "h264_open_gop",
        "x264 open-gop=1: non-IDR keyframes whose leading B-frames use the previous GOP",
        *_video(),
        *_audio(),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-x264-params",
        "keyint=50:min-keyint=50:scenecut=0:open-gop=1:bframes=3",
        *AAC,
    ),
    _r(
        "h264_long_gop",
        "x264 10 s GOPs (x264's default keyint 250 at 25 fps), 20 s",
        *_video(20),
        *_audio(20),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-x264-params",
        "keyint=250:min-keyint=250:scenecut=0",
        *AAC,
    ),
    _r("h264_opus", "x264 + Opus", *_video(), *_audio(), *X264, "-c:a", "libopus", "-b:a", "64k"),
    _r("h264_mp3", "x264 + MP3", *_video(), *_audio(), *X264, "-c:a", "libmp3lame", "-b:a", "96k"),
    _r("h264_no_audio", "x264, no audio track", *_video(), *X264),
    _r("audio_only", "AAC only, no video track", *_audio(), *AAC),
    _r(
        "two_audio",
        "x264 + two AAC tracks (different content)",
        *_video(),
        *_audio(),
        *_audio(formula="0.3*sin(2*PI*(900-25*t)*t)"),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:a",
        *X264,
        *AAC,
    ),
    # timing
    _r(
        "vfr",
        "variable frame rate (frames dropped irregularly, -fps_mode vfr)",
        *_video(),
        *_audio(),
        "-vf",
        "select='not(eq(mod(n\\,7)\\,3))*not(eq(mod(n\\,11)\\,5))'",
        "-fps_mode",
        "vfr",
        *X264,
        *AAC,
    ),
    _r(
        "h264_bframes_16",
        "x264 with 16 B-frames and a B-pyramid (deep reordering)",
        *_video(),
        *_audio(),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-x264-params",
        "keyint=50:min-keyint=50:scenecut=0:bframes=16:b-adapt=0:b-pyramid=normal",
        *AAC,
    ),
    _r(
        "ntsc_29_97",
        "29.97 fps (30000/1001) x264, AAC 44.1 kHz mono",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=320x180:rate=30000/1001:duration={SECONDS}",
        *_audio(),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-x264-params",
        "keyint=60:min-keyint=60:scenecut=0",
        "-c:a",
        "aac",
        "-ar",
        "44100",
        "-ac",
        "1",
        "-b:a",
        "48k",
    ),
    _r(
        "rotation_90",
        "display matrix: rotate 90 (set on a stream copy: ffmpeg 5.1 drops it when encoding)",
        "-i",
        "{base}",
        "-map",
        "0",
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        base="h264_aac_moov_at_end",
    ),
    _r("timescale_1000", "video timescale 1000", *BASE, "-video_track_timescale", "1000"),
    _r("timescale_90000", "video timescale 90000", *BASE, "-video_track_timescale", "90000"),
    _r(
        "intra_refresh",
        "x264 intra-refresh=1 (stss marks recovery points, one IDR)",
        *_video(),
        *_audio(),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-x264-params",
        "keyint=50:intra-refresh=1:scenecut=0",
        *AAC,
    ),
    # edit lists
    _r(
        "edit_list_ss",
        "ffmpeg -ss 1.3 -i in.mp4 -c copy: an edit list hides 1.3 s",
        "-ss",
        "1.3",
        "-i",
        "{base}",
        "-map",
        "0",
        "-c",
        "copy",
        base="h264_aac_faststart",
    ),
    _r(
        "empty_edit_video_delay",
        "video delayed 2 s by an empty edit (-itsoffset 2 on the video input)",
        "-i",
        "{base}",
        "-itsoffset",
        "2",
        "-i",
        "{base}",
        "-map",
        "1:v",
        "-map",
        "0:a",
        "-c",
        "copy",
        base="h264_aac_faststart",
    ),
    _r(
        "no_editlist_bframes",
        "-use_editlist 0: no edit list, so the B-frame delay shows (video starts at 0.08 s)",
        *BASE,
        "-use_editlist",
        "0",
    ),
    _r(
        "negative_cts",
        "-movflags negative_cts_offsets: ctts version 1, negative composition offsets",
        *BASE,
        "-movflags",
        "negative_cts_offsets",
    ),
    # fragmented
    _r(
        "frag_mfra",
        "frag_keyframe+empty_moov (mfra, no sidx)",
        *BASE,
        "-movflags",
        "frag_keyframe+empty_moov",
    ),
    _r(
        "frag_no_index",
        "frag_keyframe+empty_moov+skip_trailer (no mfra, no sidx)",
        *BASE,
        "-movflags",
        "frag_keyframe+empty_moov+skip_trailer",
    ),
    _r(
        "frag_global_sidx",
        "frag_keyframe+empty_moov+default_base_moof+global_sidx (a sidx per track up front, mfra)",
        *BASE,
        "-movflags",
        "frag_keyframe+empty_moov+default_base_moof+global_sidx",
    ),
    _r(
        "frag_global_sidx_broken",
        "frag_keyframe+empty_moov+global_sidx: ffmpeg 5.1 writes wrong data offsets",
        *BASE,
        "-movflags",
        "frag_keyframe+empty_moov+global_sidx",
        malformed=(
            "ffmpeg 5.1 moves the fragments to insert the sidx but not their absolute data "
            "offsets (no default_base_moof): every video sample points at the wrong bytes and "
            "no decoder reads the file (ffmpeg -i f -f null - reports invalid NAL sizes)"
        ),
    ),
    _r(
        "frag_separate_moof_1s",
        "frag_keyframe+empty_moov+separate_moof, 1 s fragments not aligned on keyframes",
        *_video(16),
        *_audio(16),
        *X264,
        *AAC,
        "-movflags",
        "frag_keyframe+empty_moov+separate_moof",
        "-frag_duration",
        "1000000",
    ),
    _r(
        "frag_separate_moof_1s_large",
        "frag_separate_moof_1s at ~11 MB (grain, fixed QP)",
        *LARGE,
        "-movflags",
        "frag_keyframe+empty_moov+separate_moof",
        "-frag_duration",
        "1000000",
    ),
    _r(
        "frag_no_empty_moov",
        "-movflags frag_keyframe without empty_moov (first fragment's samples in the moov)",
        *BASE,
        "-movflags",
        "frag_keyframe",
    ),
    _r("cmaf", "-movflags cmaf", *BASE, "-movflags", "cmaf"),
    _r("dash_mfra", "-movflags dash (a sidx per fragment, and mfra)", *BASE, "-movflags", "dash"),
    _r(
        "dash_skip_trailer",
        "-movflags dash+skip_trailer (a sidx per fragment, no mfra)",
        *BASE,
        "-movflags",
        "dash+skip_trailer",
    ),
    _r(
        "dash_skip_trailer_large",
        "dash_skip_trailer at ~11 MB (grain, fixed QP)",
        *LARGE,
        "-movflags",
        "dash+skip_trailer",
    ),
    # fragment layouts other pipelines write
    _r(
        "frag_every_frame",
        "-movflags frag_every_frame+empty_moov: a moof per video frame (small fragments), mfra",
        *BASE,
        "-movflags",
        "frag_every_frame+empty_moov",
    ),
    _r(
        "frag_keyframe_1s",
        "frag_keyframe+empty_moov, 1 s fragments not aligned on keyframes (both tracks per moof)",
        *_video(16),
        *_audio(16),
        *X264,
        *AAC,
        "-movflags",
        "frag_keyframe+empty_moov",
        "-frag_duration",
        "1000000",
    ),
    Recipe(
        "frag_audio_tfdt_back",
        "frag_keyframe_1s with each audio fragment's tfdt 5 ms before the previous one ends",
        base="frag_keyframe_1s",
        relayout={"step_back_ms": 5.0},
    ),
    # other muxers: GStreamer (Debian's gstreamer1.0-plugins-good), re-muxing x264 + AAC
    Recipe(
        "gst_mp4mux",
        "GStreamer mp4mux (moov at the end)",
        base="h264_aac_moov_at_end",
        gst=GST_REMUX.replace("{mux}", "mp4mux"),
    ),
    Recipe(
        "gst_mp4mux_fragmented",
        "GStreamer mp4mux fragment-duration=1000: a moof per track per second, the audio's "
        "first, and an mfra",
        base="h264_aac_moov_at_end",
        gst=GST_REMUX.replace("{mux}", "mp4mux fragment-duration=1000"),
    ),
    Recipe(
        "gst_qtmux_robust",
        "GStreamer qtmux robust muxing (room for 1 h, reserved-moov-update-period): the moov "
        "near the start, behind 3.9 MB of free space, more after it",
        base="h264_aac_moov_at_end",
        gst=GST_REMUX.replace(
            "{mux}",
            "qtmux reserved-max-duration=3600000000000 reserved-moov-update-period=1000000000",
        ),
        suffix=".mov",
    ),
    # a browser's muxer: mp4-muxer (npm), as WebCodecs recording pipelines use it, re-muxing
    # H.264 without B-frames (what WebCodecs and hardware encoders emit) and AAC
    _r(
        "h264_aac_no_bframes",
        "x264 without B-frames (as WebCodecs and hardware encoders write) + AAC",
        *_video(),
        *_audio(),
        *X264[:-1],
        X264[-1] + ":bframes=0",
        *AAC,
    ),
    Recipe(
        "browser_mp4_muxer",
        "mp4-muxer (npm) fastStart in-memory: a browser recording's MP4, moov first",
        base="h264_aac_no_bframes",
        browser={"package": MP4_MUXER, "fastStart": "in-memory"},
    ),
    Recipe(
        "browser_mp4_muxer_fragmented",
        "mp4-muxer (npm) fastStart fragmented, 1 s fragments: a browser's streamed recording",
        base="h264_aac_no_bframes",
        browser={"package": MP4_MUXER, "fastStart": "fragmented", "minFragmentDuration": 1.0},
    ),
    # re-laid out by tests/corpus/relayout.py (MP4Box-style layouts)
    Recipe(
        "interleave_500ms_stco",
        "0.5 s chunks interleaved (MP4Box -inter 500), stco, moov first",
        base="h264_aac_moov_at_end",
        relayout={"chunk_s": 0.5},
    ),
    Recipe(
        "interleave_1s_co64",
        "1 s chunks interleaved, co64 offsets, moov first",
        base="h264_aac_moov_at_end",
        relayout={"chunk_s": 1.0, "co64": True},
    ),
    Recipe(
        "co64_moov_at_end",
        "0.2 s chunks, co64 offsets, moov at the end",
        base="h264_aac_moov_at_end",
        relayout={"chunk_s": 0.2, "co64": True, "moov_first": False},
    ),
    Recipe(
        "audio_lags_1s",
        "0.5 s chunks, audio stored 1 s after the video of the same time",
        base="h264_aac_moov_at_end",
        relayout={"chunk_s": 0.5, "lag_s": 1.0},
    ),
    Recipe(
        "audio_leads_1s",
        "0.5 s chunks, audio stored 1 s before the video of the same time",
        base="h264_aac_moov_at_end",
        relayout={"chunk_s": 0.5, "lag_s": -1.0},
    ),
    Recipe(
        "non_interleaved_faststart",
        "all video, then all audio (MP4Box -flat), moov first",
        base="h264_aac_moov_at_end",
        relayout={"chunk_s": None},
    ),
    Recipe(
        "non_interleaved_moov_at_end",
        "all video, then all audio, moov at the end",
        base="h264_aac_moov_at_end",
        relayout={"chunk_s": None, "moov_first": False},
    ),
]
RECIPES: dict[str, Recipe] = {r.kind: r for r in _LIST}
KINDS = tuple(RECIPES)


@cache
def _ffmpeg_version() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("the corpus needs the ffmpeg CLI (Debian package ffmpeg)")
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def cache_dir() -> Path:
    return Path(os.environ.get("CLIPSEARCH_CORPUS_CACHE", ROOT / ".cache" / "corpus"))


def build(kind: str, directory: Path | None = None) -> Path:
    """The file for `kind`, made once and cached by its recipe's hash."""
    recipe = RECIPES[kind]
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{kind}-{recipe.key()}{recipe.suffix}"
    if out.exists():
        return out
    tmp = out.with_name(f".{out.stem}.{os.getpid()}{recipe.suffix}")
    base = build(recipe.base, directory) if recipe.base else None
    if recipe.relayout:
        assert base is not None
        if "step_back_ms" in recipe.relayout:
            step_back_tfdt(base, tmp, **recipe.relayout)  # type: ignore[arg-type]
        else:
            relayout(base, tmp, **recipe.relayout)  # type: ignore[arg-type]
    elif recipe.browser:
        assert base is not None
        _browser_mux(base, tmp, recipe.browser, directory)
    elif recipe.gst:
        assert base is not None
        exe = shutil.which("gst-launch-1.0")
        if exe is None:
            raise RuntimeError("the corpus needs GStreamer (Debian: gstreamer1.0-tools)")
        pipeline = recipe.gst.replace("{base}", str(base)).replace("{out}", str(tmp))
        done = subprocess.run(
            [exe, "-q", *pipeline.split()], check=False, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"gst-launch-1.0 failed for {kind}: {done.stderr[-2000:]}")
    else:
        args = [a.replace("{base}", str(base)) if base else a for a in recipe.args]
        cmd = [shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-v", "error", "-y", *args]
        cmd += ["-f", "mov" if recipe.suffix == ".mov" else "mp4", str(tmp)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg failed for {kind}: {done.stderr[-2000:]}")
    tmp.replace(out)
    for old in directory.glob(f"{kind}-*{recipe.suffix}"):  # older versions of this recipe
        if old != out and re.fullmatch(rf"{kind}-[0-9a-f]{{16}}", old.stem):
            old.unlink(missing_ok=True)
    return out


def _browser_mux(base: Path, out: Path, options: dict[str, object], directory: Path) -> None:
    """Hand `base`'s packets to mp4-muxer as a WebCodecs pipeline would (microsecond times,
    avcC and AudioSpecificConfig as decoder descriptions); node writes `out`."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("the corpus needs Node.js and npm (Debian: nodejs, npm)")
    modules = directory / "npm" / "node_modules"
    package = str(options["package"])
    if not (modules / package.rsplit("@", 1)[0] / "package.json").exists():
        subprocess.run(
            [npm, "install", "--prefix", str(modules.parent), "--no-audit", "--no-fund", package],
            check=True,
            capture_output=True,
            timeout=300,
        )
    manifest = out.with_suffix(".json")
    blob = bytearray()
    packets = []
    with av.open(str(base)) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        extra = bytes(v.codec_context.extradata or b"")
        for packet in sorted(
            (p for p in container.demux(v, a) if p.size and p.pts is not None),
            key=lambda p: float(p.dts * p.time_base),
        ):
            if packet.pts < 0 or packet.is_discard:
                continue  # AAC priming an edit list hides: a WebCodecs encoder does not emit it
            data = bytes(packet)
            tb = float(packet.time_base)
            packets.append(
                {
                    "track": "v" if packet.stream is v else "a",
                    "offset": len(blob),
                    "size": len(data),
                    "time": packet.pts * tb * 1e6,
                    "duration": (packet.duration or 0) * tb * 1e6,
                    "key": bool(packet.is_keyframe),
                }
            )
            blob += data
        description = {
            "video": {
                "codec": "avc1." + extra[1:4].hex(),
                "width": v.codec_context.width,
                "height": v.codec_context.height,
                "fps": FPS,
                "description": base64.b64encode(extra).decode(),
            },
            "audio": {
                "sampleRate": a.codec_context.sample_rate,
                "channels": a.codec_context.channels,
                "description": base64.b64encode(bytes(a.codec_context.extradata or b"")).decode(),
            },
        }
    options = {k: v for k, v in options.items() if k != "package"}
    manifest.write_text(json.dumps({**description, **options, "packets": packets}))
    manifest.with_suffix(".bin").write_bytes(bytes(blob))
    script = Path(__file__).with_name("browser_mux.mjs")
    try:
        subprocess.run(
            [node, str(script), str(modules), str(manifest), str(out)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        manifest.unlink(missing_ok=True)
        manifest.with_suffix(".bin").unlink(missing_ok=True)


def command(kind: str) -> str:
    """The ffmpeg command line of a recipe, for reproducing a failure by hand."""
    recipe = RECIPES[kind]
    if recipe.relayout:
        opts = " ".join(f"{k}={v}" for k, v in recipe.relayout.items())
        return f"relayout({recipe.base}.mp4, {opts})  # tests/corpus/relayout.py"
    if recipe.browser:
        opts = " ".join(f"{k}={v}" for k, v in recipe.browser.items())
        return f"node tests/corpus/browser_mux.mjs  # {recipe.base}.mp4's packets, {opts}"
    if recipe.gst:
        pipeline = recipe.gst.replace("{base}", f"{recipe.base}.mp4").replace("{out}", "out.mp4")
        return f"gst-launch-1.0 {pipeline}"
    args = " ".join(
        f"'{a}'" if any(c in a for c in " ()*;'\\") else a
        for a in (x.replace("{base}", f"{recipe.base}.mp4") for x in recipe.args)
    )
    return f"ffmpeg {args} out{recipe.suffix}"
