"""engine.clips: clips made here (pans and zooms of a generated texture, or of the shared photos), read,
refused, painted and written back, with the real sketch networks and VGG weights at tiny sizes."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import av
import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import Engine
from engine.clips import (
    CLIP_TIERS,
    ClipInfo,
    ClipLimits,
    ClipTooBigToSendError,
    ClipTooLargeError,
    ClipTooLongError,
    ClipTooManyFramesError,
    ClipTooSmallError,
    UnsupportedClipError,
    clip_weight,
    decode,
    encode,
    media,
    planned_weight,
    probe,
)
from engine.clips import paint as clip_paint
from engine.clips.errors import CLIP_ERRORS, ClipLimitError
from engine.clips.media import Clip
from engine.clips.motion import Motion, estimate, warp
from engine.clips.paint import PaintedPlan, instant, painted, steadied
from engine.errors import Cancelled, error_from_code
from engine.metrics import flicker, temporal_change
from engine.protocol import Progress, StyleSettings, StyleSource
from engine.sketch import Sketcher, SketchStyle
from tests.engine.samples import encode as encode_image
from tests.engine.samples import painting, photo

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "images"


def pan(source: Image.Image, count: int, size: tuple[int, int], step: int) -> list[Image.Image]:
    """A camera moving right by ``step`` source pixels a frame over ``source``, seen at ``size``."""
    width, height = size[0] * 2, size[1] * 2
    return [
        source.resize(size, Image.Resampling.LANCZOS, box=(i * step, 0, i * step + width, height))
        for i in range(count)
    ]


def zoom(source: Image.Image, count: int, size: tuple[int, int], step: int) -> list[Image.Image]:
    """A camera closing in on the centre of ``source``, ``step`` source pixels a side a frame."""
    cx, cy = source.width / 2, source.height / 2
    half_w, half_h = source.width / 2, source.width / 2 * size[1] / size[0]
    frames = []
    for i in range(count):
        w, h = half_w - i * step, half_h - i * step * size[1] / size[0]
        frames.append(source.resize(size, Image.Resampling.LANCZOS, box=(cx - w, cy - h, cx + w, cy + h)))
    return frames


def texture(width: int = 256, height: int = 160) -> Image.Image:
    """Something for phase correlation to hold on to: busy strokes over smooth shapes."""
    strokes = np.asarray(painting(width, height, seed=4)).astype(np.float64)
    shapes = np.asarray(photo(width, height)).astype(np.float64)
    return Image.fromarray((0.5 * strokes + 0.5 * shapes).astype(np.uint8), "RGB")


def gray_frames(count: int, size: tuple[int, int] = (40, 32)) -> list[Image.Image]:
    return [Image.new("RGB", size, (i * 8 % 256, 100, 50)) for i in range(count)]


def raw_h264(count: int, rate: int) -> bytes:
    """An elementary H.264 stream: no container, so no duration and no frame times in any header."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=Fraction(rate))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 8 % 256, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def mkv(times_ms: list[int], last_ms: int = 100, size: tuple[int, int] = (32, 32)) -> bytes:
    """A Matroska (H.264) clip whose header gives no duration (the muxer's ``live``, as a stream would):
    frames starting at ``times_ms``, each lasting until the next, the last ``last_ms``."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska", options={"live": "1"}) as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"bf": "0"}  # packets in the frames' order
        stream.codec_context.time_base = Fraction(1, 1000)
        packets = []
        for i, moment in enumerate(times_ms):
            picture = np.full((size[1], size[0], 3), i * 8 % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = moment, Fraction(1, 1000)
            packets += stream.encode(frame)
        packets += stream.encode()
        ends = [*times_ms[1:], times_ms[-1] + last_ms]
        for packet in packets:
            assert packet.pts is not None
            packet.duration = ends[times_ms.index(packet.pts)] - packet.pts
            out.mux(packet)
    return buffer.getvalue()


def with_sound(count: int, rate: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = out.add_stream("aac", rate=8000)
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 8 % 256, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for i in range(count * 8000 // rate // 800):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 8000, i * 800
            for packet in sound.encode(samples):
                out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode():
                out.mux(packet)
    return buffer.getvalue()


def streams(data: bytes) -> tuple[int, int, str | None, tuple[int, int]]:
    """(video streams, audio streams, pixel format, size) of an encoded clip."""
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        size = (video.codec_context.width, video.codec_context.height)
        return len(container.streams.video), len(container.streams.audio), video.codec_context.pix_fmt, size


# -- reading and writing --------------------------------------------------------------------------


def test_an_mp4_is_h264_yuv420p_with_even_sides_and_its_header_says_what_it_holds() -> None:
    data = encode(gray_frames(24, (41, 33)), 12, "mp4").data
    info = probe(data)
    assert (info.codec, info.width, info.height, info.fps, info.frames) == ("h264", 40, 32, 12.0, 24)
    assert info.duration == pytest.approx(2.0, abs=0.01)
    assert not info.has_audio
    assert streams(data) == (1, 0, "yuv420p", (40, 32))


def test_decoding_reduces_the_frame_rate_and_the_size() -> None:
    data = encode(pan(texture(), 24, (64, 40), 2), 24, "mp4").data
    clip = decode(data, 56, ClipLimits(max_fps=12))
    assert (len(clip.frames), clip.fps, clip.size) == (12, 12, (56, 35))
    assert clip.notes == ["24 frames a second reduced to 12", "size reduced to 56 px on the longest side"]
    narrow = decode(data, 32)  # 32 px across would leave 20 px down: the shorter side keeps 32
    assert narrow.size == (52, 32)
    slow = decode(encode(gray_frames(8), 8, "mp4").data, 64, ClipLimits(max_fps=12))
    assert (len(slow.frames), slow.fps, slow.notes) == (8, 8, [])  # never raised


def test_a_gif_frame_is_held_as_long_as_it_says() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (40, 40), c) for c in colours]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=[100, 500, 100], loop=0)
    clip = decode(buffer.getvalue(), 64, ClipLimits(max_fps=10))
    seen = [int(np.argmax(np.asarray(f)[10, 10])) for f in clip.frames]
    assert seen == [0, 1, 1, 1, 1, 1, 2]


def test_a_gif_comes_back_as_a_looping_gif() -> None:
    encoded = encode(gray_frames(6), 10, "gif")
    image = Image.open(io.BytesIO(encoded.data))
    assert (image.format, getattr(image, "n_frames", 1)) == ("GIF", 6)
    assert (image.info["loop"], image.info["duration"]) == (0, 100)
    assert len(decode(encoded.data, 64).frames) == 6


def test_sound_is_dropped() -> None:
    data = with_sound(10, 10)
    assert probe(data).has_audio
    clip = decode(data, 32)
    assert len(clip.frames) == 10
    assert streams(encode(clip.frames, clip.fps).data)[1] == 0


def test_a_long_clip_is_refused_from_its_header_before_any_frame_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(gray_frames(30), 10, "mp4").data
    limits = ClipLimits(max_seconds=2)
    with pytest.raises(ClipTooLongError) as refused:
        probe(data, limits)
    assert (refused.value.limit, refused.value.unit, refused.value.code) == (2, "seconds", "clip_too_long")
    assert refused.value.value == pytest.approx(3.0, abs=0.01)

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded a clip its header refuses")

    monkeypatch.setattr(media, "_timed_frames", no_decoding)
    with pytest.raises(ClipTooLongError):
        decode(data, 32, limits)


def test_a_clip_a_tenth_of_a_second_over_is_not_refused() -> None:
    data = encode(gray_frames(21), 10, "mp4").data  # 2.1 s: containers round
    assert len(decode(data, 32, ClipLimits(max_seconds=2)).frames) == 21


def test_a_clip_whose_header_says_no_length_is_refused_once_it_runs_past_the_limit() -> None:
    data = mkv(list(range(0, 3000, 100)))  # 30 frames, 10 a second
    assert probe(data).duration is None
    with pytest.raises(ClipTooLongError):
        decode(data, 32, ClipLimits(max_seconds=0.5))
    assert len(decode(data, 32).frames) == 30


def test_a_last_frame_lasting_hours_is_cut_at_the_limit() -> None:
    """Only the frames' starts are checked against the limit as they come; the last one's length would
    otherwise be repeated at the output rate (60000 s: 600,000 frames)."""
    data = mkv([0, 100, 200], last_ms=60_000_000)
    info = probe(data, ClipLimits(max_seconds=2))
    assert (info.duration, info.frames) == (None, None)
    clip = decode(data, 32, ClipLimits(max_seconds=2, max_fps=10))
    assert len(clip.frames) == 21  # 0.0 .. 2.0 s
    assert [int(np.asarray(f)[0, 0, 0] > 0) for f in clip.frames[:3]] == [0, 1, 1]


def test_frames_packed_closer_than_any_camera_makes_are_refused_as_they_come() -> None:
    data = mkv(list(range(30)))  # 30 frames a millisecond apart, nothing in the header says how many
    limits = ClipLimits(max_seconds=0.1)  # at most 12 source frames (MAX_SOURCE_FPS a second)
    assert media.max_source_frames(limits) == 12
    probe(data, limits)
    with pytest.raises(ClipTooManyFramesError) as refused:
        decode(data, 32, limits)
    assert (refused.value.limit, refused.value.value, refused.value.unit) == (12, 13, "frames")
    assert isinstance(refused.value, UnsupportedClipError)  # what the bot refuses as "not a clip we read"
    assert len(decode(data, 32, ClipLimits(max_seconds=0.5)).frames) == 2  # 0.13 s at 10 a second


def test_a_header_counting_too_many_frames_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(gray_frames(30), 300, "mp4").data  # 0.1 s, 30 frames
    limits = ClipLimits(max_seconds=0.1)
    with pytest.raises(ClipTooManyFramesError) as refused:
        probe(data, limits)
    assert (refused.value.limit, refused.value.value, refused.value.code) == (12, 30, "clip_too_many_frames")

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded a clip its header refuses")

    monkeypatch.setattr(media, "_timed_frames", no_decoding)
    with pytest.raises(ClipTooManyFramesError):
        decode(data, 32, limits)


def test_decoding_stops_when_cancelled() -> None:
    data = encode(gray_frames(10), 10, "mp4").data
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled, match="after 3 frames"):
        decode(data, 32, should_cancel=cancel)
    assert len(asked) == 4
    assert len(decode(data, 32, should_cancel=lambda: False).frames) == 10


@pytest.mark.parametrize(
    ("size", "limit", "value"), [((40, 30), 32, 30), ((400, 36), 10, 400 / 36)], ids=["small", "narrow"]
)
def test_a_clip_too_small_to_paint_is_refused_from_its_header(
    size: tuple[int, int], limit: float, value: float
) -> None:
    with pytest.raises(ClipTooSmallError) as refused:
        probe(encode(gray_frames(2, size), 10).data)
    assert (refused.value.limit, refused.value.value) == (limit, pytest.approx(value, abs=0.2))


def test_a_clip_with_too_many_pixels_is_refused_from_its_header() -> None:
    data = encode(gray_frames(2, (64, 48)), 10).data
    with pytest.raises(ClipTooLargeError) as refused:
        probe(data, ClipLimits(max_source_pixels=64 * 47))
    assert (refused.value.limit, refused.value.value, refused.value.code) == (
        64 * 47,
        64 * 48,
        "clip_too_large",
    )
    assert probe(data, ClipLimits(max_source_pixels=64 * 48)).width == 64


@pytest.mark.parametrize(
    "data",
    [
        b"not a clip",
        encode_image(photo(), "PNG")[:20],
        b"",
        encode_image(photo(), "PNG"),
        b"#EXTM3U\n#EXTINF:1,\nsecret.mp4\n",
        raw_h264(4, 10),
        b"GIF89a" + b"\0" * 10,
        encode(gray_frames(4), 10, "mp4").data[:40],
    ],
    ids=["text", "truncated", "empty", "png", "hls", "raw-h264", "gif-magic-alone", "mp4-header-alone"],
)
def test_what_is_not_a_clip_is_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedClipError):
        probe(data)
    with pytest.raises(UnsupportedClipError):
        decode(data, 32)


@pytest.mark.parametrize("name", ["secret.mp4", "secret.png"])
def test_a_playlist_naming_another_users_result_reads_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFmpeg, left to guess, takes this text for its concat demuxer's playlist and reads the file it
    names, relative to the worker's directory: where the results of other people's jobs are kept."""
    secret = [Image.new("RGB", (96, 96), (10, 200, 30))] * 4
    if name.endswith(".mp4"):
        (tmp_path / name).write_bytes(encode(secret, 12, "mp4").data)
    else:
        secret[0].save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    payload = f"ffconcat version 1.0\nfile {name}\n".encode()
    with pytest.raises(UnsupportedClipError, match="not a GIF, MP4/MOV or WebM/Matroska"):
        probe(payload)
    with pytest.raises(UnsupportedClipError, match="not a GIF, MP4/MOV or WebM/Matroska"):
        decode(payload, 480)


def test_ffmpeg_may_open_no_file_a_container_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall behind the sniffing: with ``OPEN_OPTIONS`` a demuxer that reads other files gets none."""
    (tmp_path / "secret.mp4").write_bytes(encode(gray_frames(4), 12, "mp4").data)
    monkeypatch.chdir(tmp_path)
    payload = b"ffconcat version 1.0\nfile secret.mp4\n"
    with av.open(io.BytesIO(payload), "r", format="concat") as container:  # what it would read otherwise
        assert len(list(container.decode(video=0))) == 4
    with pytest.raises(av.error.FFmpegError):
        av.open(io.BytesIO(payload), "r", format="concat", options=media.OPEN_OPTIONS)


def test_each_container_is_opened_by_its_own_demuxer() -> None:
    gif = encode(gray_frames(3), 10, "gif").data
    mp4 = encode(gray_frames(3), 10, "mp4").data
    mov = io.BytesIO()
    with av.open(mov, "w", format="mov") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 40, 32, "yuv420p"
        for frame in gray_frames(3):
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    clips = {"gif": gif, "mp4": mp4, "mov": mov.getvalue(), "mkv": mkv([0, 100, 200])}
    assert {kind: probe(data).container for kind, data in clips.items()} == {
        "gif": "gif",
        "mp4": "mp4",
        "mov": "mp4",
        "mkv": "matroska",
    }
    assert all(len(decode(data, 32).frames) == 3 for data in clips.values())


def test_sound_alone_is_refused() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        samples.sample_rate = 8000
        for packet in [*stream.encode(samples), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(UnsupportedClipError, match="no picture"):
        probe(buffer.getvalue())


def test_an_encoding_over_the_byte_limit_is_made_smaller_until_it_fits() -> None:
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(6)]
    full = encode(noise, 12, "mp4")
    limit = len(full.data) // 3
    fitted = encode(noise, 12, "mp4", max_bytes=limit)
    assert len(fitted.data) <= limit
    assert fitted.width < full.width
    assert fitted.width % 2 == 0
    assert fitted.height % 2 == 0
    assert fitted.notes
    assert "to fit under" in fitted.notes[0]
    assert streams(fitted.data)[3] == (fitted.width, fitted.height)
    gif = encode(noise, 12, "gif", max_bytes=len(encode(noise, 12, "gif").data) // 2)
    assert gif.width < 128
    with pytest.raises(ClipTooBigToSendError) as refused:
        encode(noise, 12, "mp4", max_bytes=200)
    assert refused.value.limit == 200
    assert refused.value.value > 200


def test_a_clips_weight_is_frames_times_pixels_and_is_known_from_the_header() -> None:
    assert clip_weight(24, 32, 20) == 24 * 32 * 20
    info = ClipInfo("mp4", "h264", 1280, 720, 20.0, 30.0, 600, True)
    limits = ClipLimits(max_seconds=10, max_fps=12)
    assert planned_weight(info, "instant", limits, accelerated=False) == 120 * 480 * 270
    assert planned_weight(info, "painted", limits, accelerated=False) == 36 * 256 * 144  # 3 s on the CPU
    assert planned_weight(info, "painted", limits, accelerated=True) == 120 * 512 * 288
    assert CLIP_TIERS["painted"].limits(limits, accelerated=False).max_seconds == 3.0


# -- motion ---------------------------------------------------------------------------------------


def test_a_pan_and_a_zoom_are_found() -> None:
    frames = pan(texture(), 2, (96, 60), 8)  # 8 source px at half size: the picture moves 4 px left
    motion = estimate(*frames)
    assert (motion.dx, motion.dy) == (pytest.approx(-4, abs=0.5), pytest.approx(0, abs=0.5))
    assert motion.scale == pytest.approx(1.0, abs=0.011)
    closer = zoom(texture(), 2, (96, 60), 6)  # the view narrows from 256 to 244 px: 5% larger
    assert estimate(*closer).scale == pytest.approx(256 / 244, abs=0.011)


def test_a_warp_carries_a_picture_along_and_marks_what_came_into_view() -> None:
    frames = pan(texture(), 2, (96, 60), 8)
    moved, inside = warp(frames[0], Motion(1.0, -4, 0))
    assert not inside[:, -4:].any()
    assert inside[:, :-5].all()
    before = np.abs(np.asarray(frames[0], float) - np.asarray(frames[1], float)).mean()
    after = np.abs(np.asarray(moved, float) - np.asarray(frames[1], float))[inside].mean()
    assert after < before / 3


def test_steadied_keeps_the_last_painting_only_where_the_motion_explains_the_frame() -> None:
    base = np.asarray(texture(), np.uint8)
    before, after = base[:40, :64], base[:40, 4:68].copy()  # the picture moved 4 px left...
    after[10:20, 10:20] = 255  # ...and something new appeared
    last, now = Image.fromarray(base[40:80, :64]), Image.new("RGB", (64, 40), (100, 100, 100))
    out = np.asarray(
        steadied(now, last, Image.fromarray(before), Image.fromarray(after), Motion(1.0, -4, 0), 0.5), float
    )
    carried = np.asarray(warp(last, Motion(1.0, -4, 0))[0], float)
    assert np.abs(out[25:35, 20:50] - (0.5 * carried[25:35, 20:50] + 50)).max() <= 1.5  # half and half
    assert np.abs(out[12:18, 12:18] - 100).max() == 0  # the new thing: only the new painting
    assert np.abs(out[:, -4:] - 100).max() == 0  # what came into view: nothing to carry


# -- flicker --------------------------------------------------------------------------------------


def test_flicker_tells_a_steady_painting_from_a_flickering_one() -> None:
    source = pan(texture(), 6, (64, 40), 4)
    steady = pan(painting(256, 160, seed=1), 6, (64, 40), 4)  # strokes that move with the picture
    rng = np.random.default_rng(0)
    flickering = [
        Image.fromarray(
            np.clip(np.asarray(f, float) + rng.normal(0, 25, (40, 64, 3)), 0, 255).astype(np.uint8)
        )
        for f in steady
    ]
    assert flicker(flickering, source, compensate=True) > 2 * flicker(steady, source, compensate=True)
    assert flicker(flickering, source) > flicker(steady, source)
    assert temporal_change(gray_frames(1)) == 0.0
    with pytest.raises(ValueError, match="as many frames"):
        flicker(steady, source[:3])


@pytest.mark.parametrize("compensate", [False, True])
def test_flicker_of_a_still_source_is_finite(compensate: bool) -> None:
    """A still source changes by nothing: its change counts as ``STILL_CHANGE``, so a still painting
    scores 0 and a moving one a large number instead of 0/0 and x/0."""
    still = [texture(64, 40)] * 3
    assert flicker(still, still, compensate=compensate) == 0.0
    moving = [Image.new("RGB", (64, 40), (v, v, v)) for v in (0, 26, 0)]  # a mean change of about 0.1
    score = flicker(moving, still, compensate=compensate)
    assert 90 < score < 110
    assert flicker(moving, moving, compensate=compensate) == pytest.approx(1.0)


# -- painting -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sketcher() -> Sketcher:
    return Sketcher()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(device="cpu", styles_dir=tmp_path_factory.mktemp("styles"), precision="fp32")


def test_instant_sketches_every_frame_with_one_style_vector(
    sketcher: Sketcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = Clip(pan(texture(), 4, (48, 32), 4), 12)
    art = painting(64, 64, seed=2)
    predicted = []
    real_predict = sketcher._predict

    def predict(image: Image.Image) -> np.ndarray:
        predicted.append(image)
        return real_predict(image)

    monkeypatch.setattr(sketcher, "_predict", predict)
    reports: list[Progress] = []
    out = instant(clip, sketcher, [SketchStyle(art, digest="art")], strength=0.2, progress=reports.append)
    assert len(predicted) == 2  # the painting's vector and the clip's own, once each for all four frames
    assert [f.size for f in out.frames] == [(48, 32)] * 4
    assert out.fps == 12
    assert [(r.step, r.total_steps) for r in reports] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert reports[-1].eta == 0
    assert reports[0].preview is not None
    same = instant(clip, sketcher, [SketchStyle(art, digest="art")], strength=0.2)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(out.frames, same.frames, strict=True))
    alone = sketcher.sketch(clip.frames[1], [SketchStyle(art, digest="art")], side=48)
    assert np.abs(np.asarray(alone, float) - np.asarray(out.frames[1], float)).mean() > 0  # not per frame


def test_instant_stops_between_frames_when_cancelled(sketcher: Sketcher) -> None:
    clip = Clip(gray_frames(5), 12)
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled, match="after 2 frames"):
        instant(clip, sketcher, [SketchStyle(painting())], should_cancel=cancel)


def test_painted_asks_to_cancel_before_estimating_any_motion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Motion is estimated a chunk at a time after each cancel check, not for every pair up front."""
    estimated = []

    def estimate_counted(a: Image.Image, b: Image.Image) -> Motion:
        estimated.append(1)
        return estimate(a, b)

    monkeypatch.setattr(clip_paint, "estimate", estimate_counted)
    clip = Clip(pan(texture(), 6, (48, 32), 4), 12)
    nothing = cast(Engine, SimpleNamespace(device=torch.device("cpu")))  # asked nothing before the cancel
    with pytest.raises(Cancelled, match="after 0 frames"):
        painted(clip, nothing, (StyleSource(preset="udnie"),), should_cancel=lambda: True)
    assert estimated == []


def test_clip_errors_cross_a_process_boundary_typed() -> None:
    for code, cls in CLIP_ERRORS.items():
        err = error_from_code(code, "the reason")
        assert (type(err), err.code, str(err)) == (cls, code, "the reason")
        if isinstance(err, ClipLimitError):
            assert np.isnan(err.limit)  # not carried: the message names the limit and the value
            assert np.isnan(err.value)
    assert set(CLIP_ERRORS) >= {
        "bad_clip",
        "unsupported_clip",
        "clip_too_long",
        "clip_too_large",
        "clip_too_small",
        "clip_too_big_to_send",
        "clip_too_many_frames",
    }
    assert type(error_from_code("no_such_code", "x")).__name__ == "StylebotError"


@pytest.mark.slow
def test_painted_warm_starts_each_frame_from_the_last_painting_carried_along(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = Clip(pan(texture(), 3, (48, 32), 6), 12)
    runs: list[list[Image.Image | None]] = []
    real_run = engine._run

    def run(jobs: list[Any]) -> Any:
        runs.append([job.start for job in jobs])
        return real_run(jobs)

    monkeypatch.setattr(engine, "_run", run)
    reports: list[Progress] = []
    styles = (StyleSource(image=encode_image(painting())),)
    out = painted(clip, engine, styles, StyleSettings(), plan=PaintedPlan(6, 3), progress=reports.append)
    assert [f.size for f in out.frames] == [(48, 32)] * 3
    assert [(r.step, r.total_steps) for r in reports] == [(1, 3), (2, 3), (3, 3)]
    assert [len(r) for r in runs] == [1, 1, 1]
    assert runs[0] == [None]
    start = runs[1][0]
    assert start is not None
    carried, inside = warp(out.frames[0], estimate(clip.frames[0], clip.frames[1]))
    difference = np.abs(np.asarray(start, float) - np.asarray(carried, float))
    assert difference[inside].max() == 0  # the last painting, moved along the motion...
    photo_pixels = np.asarray(clip.frames[1], float)[~inside]
    assert np.array_equal(np.asarray(start, float)[~inside], photo_pixels)  # ...the new edge from the frame


@pytest.mark.slow
def test_painted_batches_frames_and_stops_mid_clip_when_cancelled(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = Clip(pan(texture(), 5, (40, 32), 4), 12)
    sizes: list[int] = []
    real_run = engine._run

    def run(jobs: list[Any]) -> Any:
        sizes.append(len(jobs))
        return real_run(jobs)

    monkeypatch.setattr(engine, "_run", run)
    styles = (StyleSource(image=encode_image(painting())),)
    out = painted(clip, engine, styles, plan=PaintedPlan(3, 2), batch_size=2)
    assert sizes == [1, 2, 2]
    assert len(out.frames) == 5
    calls = []

    def cancel() -> bool:  # asked at every step: the second frame's own steps are where it stops
        calls.append(1)
        return len(calls) > 8

    with pytest.raises(Cancelled):
        painted(clip, engine, styles, plan=PaintedPlan(3, 2), should_cancel=cancel)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "content").is_dir(), reason="needs the shared images (../shared/images)")
def test_a_painted_pan_of_a_shared_photo_flickers_less_than_painting_each_frame_afresh(
    engine: Engine,
) -> None:
    """The warm start's point, measured: carried along the motion, the painting moves with the picture;
    from the photo each time, it is re-invented every frame."""
    source = Image.open(SHARED / "content" / "tubingen.jpg").convert("RGB")
    clip = Clip(pan(source, 4, (64, 40), 24), 12)
    styles = (StyleSource(image=(SHARED / "styles" / "starry_night.jpg").read_bytes()),)
    carried = painted(clip, engine, styles, plan=PaintedPlan(20, 8))
    afresh = painted(clip, engine, styles, plan=PaintedPlan(20, 8, start="frame"))
    assert flicker(carried.frames, clip.frames, compensate=True) < flicker(
        afresh.frames, clip.frames, compensate=True
    )
