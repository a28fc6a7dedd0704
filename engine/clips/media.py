"""A clip's bytes in and out: the header read alone, frames decoded at a capped rate and size, frames
encoded as MP4 (H.264) or GIF under a byte limit.

Three containers are read, told apart by their first bytes: GIF, MP4/MOV (Telegram's animations, videos
and round video notes) and WebM/Matroska (Discord's WebM). FFmpeg is told which one and may open no other
file: left to guess, it takes a text file for its "concat" (or HLS) playlist and reads the files it names,
such as another user's painting. ``probe`` reads only the header and refuses a clip that is too long, too
large or has too many frames before a frame is decoded; ``decode`` still counts time and frames as it
goes, since a header can lack them (some WebM) or lie, and stops at the limits; the last frame is cut at
the time limit. Sound is never decoded: only the first video stream is opened.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.container
import av.error
import av.video
from PIL import Image

from engine.clips.errors import (
    ClipTooBigToSendError,
    ClipTooLargeError,
    ClipTooLongError,
    ClipTooManyFramesError,
    ClipTooSmallError,
    UnsupportedClipError,
)
from engine.errors import Cancelled
from engine.images import MAX_ASPECT, MIN_SIDE, fit_within

log = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 10.0  # CLIP_MAX_SECONDS
DEFAULT_MAX_FPS = 12.0  # CLIP_MAX_FPS
DEFAULT_MAX_SOURCE_PIXELS = 3840 * 2160  # per frame: 4K UHD and below are read, then scaled down
GRACE_SECONDS = 0.1  # containers round: a clip recorded as 10 s often says 10.03
# Source frames read at most, per second of the time limit: a GIF's fastest frames are 100 a second, a
# phone's slow motion 120 or 240 (half the limit of it fits). Without it, frames packed microseconds
# apart keep a worker decoding for half an hour (a 1080p frame repeating the last: 62 bytes, 6 ms).
MAX_SOURCE_FPS = 120
# The containers we read, by their first bytes, and the FFmpeg demuxer each is opened with.
CONTAINERS = (
    ("gif", (b"GIF87a", b"GIF89a"), 0),
    ("mp4", (b"ftyp",), 4),  # FFmpeg's mov demuxer: MP4, MOV, 3GP
    ("matroska", (b"\x1a\x45\xdf\xa3",), 0),  # EBML: Matroska and WebM
)
# No protocol for a file the container names (an MP4's data references): a second wall behind the
# sniffing, so FFmpeg reads nothing but the bytes it is given.
OPEN_OPTIONS = {"protocol_whitelist": "none"}
MP4_CRFS = (23, 28, 33)  # x264 quality steps tried before the size is lowered (higher: smaller, blurrier)
GIF_COLOURS = (256, 64)  # palette sizes tried before the size is lowered
SHRINK = 0.75  # each further try's side, at most, against the last
MIN_SEND_SIDE = 64  # below this an encoding is not worth sending: the clip is refused instead
FORMATS = ("mp4", "gif")


@dataclass(frozen=True)
class ClipLimits:
    """What a clip may be: the bot fills these from CLIP_MAX_SECONDS and CLIP_MAX_FPS."""

    max_seconds: float = DEFAULT_MAX_SECONDS
    max_fps: float = DEFAULT_MAX_FPS
    max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.max_fps <= 0 or self.max_source_pixels <= 0:
            raise ValueError("clip limits must be positive")


@dataclass(frozen=True)
class ClipInfo:
    """What the container's header says; ``None`` where it does not say."""

    container: str
    codec: str
    width: int  # as displayed (a rotated phone video's sides swapped)
    height: int
    duration: float | None  # seconds
    fps: float | None
    frames: int | None
    has_audio: bool


@dataclass
class Clip:
    """Frames at a constant rate, all the same size."""

    frames: list[Image.Image]
    fps: float
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps


@dataclass(frozen=True)
class EncodedClip:
    data: bytes
    format: str  # "mp4" or "gif"
    width: int
    height: int
    frames: int
    fps: float
    notes: tuple[str, ...] = ()


def probe(data: bytes, limits: ClipLimits | None = None) -> ClipInfo:
    """The clip's header, checked against ``limits`` before anything is decoded.

    Raises ``UnsupportedClipError`` (not a clip we read), ``ClipTooLongError``, ``ClipTooLargeError``,
    ``ClipTooSmallError``, ``ClipTooManyFramesError`` (also an ``UnsupportedClipError``).
    """
    limits = limits or ClipLimits()
    with _open(data) as container:
        stream = _video_stream(container)
        info = _info(container, stream)
        _check(info, limits, stream.frames)
    return info


def decode(
    data: bytes,
    side: int,
    limits: ClipLimits | None = None,
    *,
    should_cancel: Callable[[], bool] | None = None,
) -> Clip:
    """The clip's frames at ``min(its rate, max_fps)`` frames a second, at most ``side`` px on the longest
    side (more for a narrow clip, whose shorter side keeps ``MIN_SIDE``), without sound.

    Frames are taken by time (each output instant shows the source frame on screen then), so a GIF whose
    frames last unequal times plays at its own pace. Checked as ``probe`` does first; a clip whose frames
    start past ``max_seconds`` or number more than ``MAX_SOURCE_FPS`` a second of it, although its header
    said otherwise, is refused as soon as they do; the last frame is cut at the limit (its length is the
    one time no later frame checks). ``should_cancel`` is asked at every source frame (``Cancelled``).
    """
    limits = limits or ClipLimits()
    with _open(data) as container:
        stream = _video_stream(container)
        info = _info(container, stream)
        _check(info, limits, stream.frames)
        stream.thread_type = "AUTO"
        fps = min(limits.max_fps, info.fps or limits.max_fps)
        short, long = sorted((info.width, info.height))
        side = max(side, math.ceil(MIN_SIDE * long / short))  # a narrow clip keeps MIN_SIDE across
        most = math.ceil(limits.max_seconds * fps - 1e-9) + 1  # the instants 0 .. max_seconds
        timed = _timed_frames(container, stream, info, limits, should_cancel)
        frames = list(_resampled(timed, fps, side, most))
    if not frames:
        raise UnsupportedClipError("the clip has no frames")
    notes = []
    if info.fps and info.fps > fps + 0.01:
        notes.append(f"{info.fps:.3g} frames a second reduced to {fps:.3g}")
    if max(info.width, info.height) > side:
        notes.append(f"size reduced to {side} px on the longest side")
    return Clip(frames, fps, notes)


def encode(
    frames: Sequence[Image.Image],
    fps: float,
    fmt: str = "mp4",
    *,
    max_bytes: int | None = None,
) -> EncodedClip:
    """The frames as an MP4 (H.264, yuv420p, even sides, no sound: what Telegram's sendAnimation and
    sendVideo and a Discord attachment all play) or a looping GIF, under ``max_bytes`` if given.

    Too large: the quality is lowered first (x264's CRF, the GIF's palette), then the size, by steps, down
    to ``MIN_SEND_SIDE``; past that ``ClipTooBigToSendError``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if not frames:
        raise ValueError("no frames to encode")
    width, height = frames[0].size
    side = max(width, height)
    notes: list[str] = []
    smallest = 0
    while True:
        scaled = [_fit(f, side) for f in frames] if side != max(width, height) else list(frames)
        for quality in MP4_CRFS if fmt == "mp4" else GIF_COLOURS:
            data = _mp4(scaled, fps, quality) if fmt == "mp4" else _gif(scaled, fps, quality)
            smallest = len(data)
            if max_bytes is None or len(data) <= max_bytes:
                out_w, out_h = _even(scaled[0].size) if fmt == "mp4" else scaled[0].size
                if side != max(width, height):
                    notes.append(f"made at {side} px to fit under {max_bytes} bytes")
                return EncodedClip(data, fmt, out_w, out_h, len(frames), fps, tuple(notes))
        assert max_bytes is not None
        # The bytes grow about with the pixels: aim the next try at the limit, shrinking by SHRINK at least.
        factor = min(SHRINK, math.sqrt(max_bytes / smallest) * 0.95)
        if side <= MIN_SEND_SIDE:
            raise ClipTooBigToSendError(
                max_bytes,
                smallest,
                f"the clip is {smallest} bytes even at {side} px; the limit is {max_bytes}",
            )
        side = max(MIN_SEND_SIDE, int(side * factor))


# -- reading --------------------------------------------------------------------------------------


def container_format(data: bytes) -> str:
    """The FFmpeg demuxer for ``data`` by its first bytes; ``UnsupportedClipError`` for any other file."""
    for name, magics, offset in CONTAINERS:
        if any(data[offset : offset + len(magic)] == magic for magic in magics):
            return name
    raise UnsupportedClipError("not a GIF, MP4/MOV or WebM/Matroska file")


def _open(data: bytes) -> av.container.InputContainer:
    fmt = container_format(data)
    try:
        return av.open(io.BytesIO(data), mode="r", format=fmt, options=OPEN_OPTIONS)
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise UnsupportedClipError(f"not a clip we can read: {err}") from err


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        container.close()
        raise UnsupportedClipError("the file has no picture (no video stream)")
    return container.streams.video[0]


def _info(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> ClipInfo:
    duration: float | None = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    # A GIF's frames may last unequal times: its average rate (3 frames in 0.7 s) would drop the short
    # ones, so the rate that times every frame (FFmpeg's guess: 10 there) counts when it is higher.
    rates = [float(r) for r in (stream.average_rate, stream.guessed_rate) if r]
    fps = max(rates) if rates else None
    frames = stream.frames or (round(duration * fps) if duration and fps else None)
    width, height = stream.codec_context.width, stream.codec_context.height
    return ClipInfo(
        container=container.format.name,
        codec=stream.codec_context.name,
        width=width,
        height=height,
        duration=duration,
        fps=fps,
        frames=frames or None,
        has_audio=bool(container.streams.audio),
    )


def _check(info: ClipInfo, limits: ClipLimits, counted: int) -> None:
    """``info`` against ``limits``; ``counted``: the frames the container itself counts (0: unknown), not
    the estimate in ``info.frames``, which a guessed rate can inflate."""
    if info.width <= 0 or info.height <= 0:
        raise UnsupportedClipError("the clip's header gives no picture size")
    pixels = info.width * info.height
    if pixels > limits.max_source_pixels:
        raise ClipTooLargeError(
            limits.max_source_pixels,
            pixels,
            f"{info.width}x{info.height} is more than {limits.max_source_pixels} pixels a frame",
        )
    short, long = sorted((info.width, info.height))
    if short < MIN_SIDE:
        raise ClipTooSmallError(
            MIN_SIDE, short, f"{info.width}x{info.height}: each side needs {MIN_SIDE} px or more"
        )
    if long / short > MAX_ASPECT:
        raise ClipTooSmallError(
            MAX_ASPECT, long / short, f"{info.width}x{info.height} is too narrow (at most {MAX_ASPECT:g}:1)"
        )
    if info.duration is not None and info.duration > limits.max_seconds + GRACE_SECONDS:
        raise ClipTooLongError(
            limits.max_seconds,
            info.duration,
            f"{info.duration:.1f} s is longer than {limits.max_seconds:g} s",
        )
    most = max_source_frames(limits)
    if counted > most:
        raise ClipTooManyFramesError(
            most, counted, f"{counted} frames is more than {most} for {limits.max_seconds:g} s"
        )


def max_source_frames(limits: ClipLimits) -> int:
    """The source frames a clip may hold: ``MAX_SOURCE_FPS`` for each second of the time limit."""
    return math.ceil(limits.max_seconds * MAX_SOURCE_FPS)


def _timed_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: ClipInfo,
    limits: ClipLimits,
    should_cancel: Callable[[], bool] | None,
) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """(start, end, frame) in seconds from the first frame, every end at most the limit; refused once a
    frame starts past the limit or there are too many frames."""
    start: float | None = None
    previous: tuple[float, av.VideoFrame] | None = None
    default = 1.0 / (info.fps or limits.max_fps)
    latest = limits.max_seconds + GRACE_SECONDS
    most = max_source_frames(limits)
    count = 0
    try:
        for frame in container.decode(stream):
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"cancelled while decoding, after {count} frames")
            if count >= most:
                raise ClipTooManyFramesError(
                    most, count + 1, f"more than {most} frames in {limits.max_seconds:g} s"
                )
            moment = frame.time if frame.time is not None else count * default
            count += 1
            start = moment if start is None else start
            moment -= start
            if moment > latest:
                raise ClipTooLongError(
                    limits.max_seconds, moment, f"the clip runs past {limits.max_seconds:g} s"
                )
            if previous is not None:
                if moment <= previous[0]:  # a repeated or out-of-order time: keep the later picture
                    previous = (previous[0], frame)
                    continue
                yield previous[0], moment, previous[1]
            previous = (moment, frame)
    except av.error.FFmpegError as err:
        if previous is None:
            raise UnsupportedClipError(f"the clip cannot be decoded: {err}") from err
        log.warning("a clip's stream broke off after %.2f s: %s; keeping what came before", previous[0], err)
    if previous is not None:
        last = previous[1]
        length = float(last.duration * last.time_base) if last.duration and last.time_base else default
        yield previous[0], min(previous[0] + length, latest), last  # a long last frame ends at the limit


def _resampled(
    timed: Iterator[tuple[float, float, av.VideoFrame]], fps: float, side: int, most: int
) -> Iterator[Image.Image]:
    """One picture every 1/fps seconds, ``most`` at most: the source frame on screen at that instant,
    converted once."""
    index = 0
    for _begin, end, frame in timed:
        picture: Image.Image | None = None
        while index / fps < end - 1e-6:  # the instants from ``begin`` (where the last frame ended) on
            if index >= most:
                return
            picture = picture or _picture(frame, side)
            yield picture
            index += 1


def _picture(frame: av.VideoFrame, side: int) -> Image.Image:
    image = frame.to_image()  # RGB
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation % 360:
        image = image.rotate(rotation, expand=True)  # the display matrix's angle, counterclockwise
    return _fit(image, side)


def _fit(image: Image.Image, side: int) -> Image.Image:
    size = fit_within(image.width, image.height, side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


# -- writing --------------------------------------------------------------------------------------


def _even(size: tuple[int, int]) -> tuple[int, int]:
    return max(2, size[0] - size[0] % 2), max(2, size[1] - size[1] % 2)


def _mp4(frames: Sequence[Image.Image], fps: float, crf: int) -> bytes:
    width, height = _even(frames[0].size)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for image in frames:
            if image.size != (width, height):
                image = image.crop((0, 0, width, height))  # an odd side loses its last row or column
            frame = av.VideoFrame.from_image(image.convert("RGB"))
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def _gif(frames: Sequence[Image.Image], fps: float, colours: int) -> bytes:
    """A looping GIF; its frame times are whole hundredths of a second, so 12 fps plays at 12.5."""
    duration = max(20, round(100 / fps) * 10)  # ms; browsers slow anything under 20 ms down to 100
    paletted = [f.convert("RGB").quantize(colors=colours) for f in frames]
    buffer = io.BytesIO()
    paletted[0].save(buffer, "GIF", save_all=True, append_images=paletted[1:], duration=duration, loop=0)
    return buffer.getvalue()
