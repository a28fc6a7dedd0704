"""Small clips for the tests of clip jobs (issue 21): a GIF, an MP4 as Telegram sends an animation, a
round video note (square), all made here in milliseconds, and how many frames a result holds."""

from __future__ import annotations

import io

import av
from PIL import Image, ImageDraw

from engine.clips import encode


def frames(count: int, size: tuple[int, int] = (64, 48)) -> list[Image.Image]:
    """A square moving across a gradient: each frame differs."""
    width, height = size
    out = []
    for index in range(count):
        image = Image.new("RGB", size, (40, 90 + index * 7 % 120, 160))
        draw = ImageDraw.Draw(image)
        x = index * 3 % max(1, width - 12)
        draw.rectangle((x, height // 3, x + 10, height // 3 + 10), fill=(230, 200, 30))
        out.append(image)
    return out


def gif(count: int = 6, size: tuple[int, int] = (64, 48), frame_ms: int = 100) -> bytes:
    """A looping GIF of ``count`` frames, ``frame_ms`` each."""
    buffer = io.BytesIO()
    first, *rest = frames(count, size)
    first.save(buffer, "GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0)
    return buffer.getvalue()


def mp4(count: int = 6, size: tuple[int, int] = (64, 48), fps: float = 12) -> bytes:
    """An H.264 MP4 with no sound, as Telegram sends a GIF (an "animation") or a video."""
    return encode(frames(count, size), fps, "mp4").data


def webm(count: int = 6, size: tuple[int, int] = (64, 48), fps: int = 12) -> bytes:
    """A VP8 WebM, as browsers record and Discord carries."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for image in frames(count, size):
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def video_note(count: int = 6, side: int = 64, fps: float = 12) -> bytes:
    """A round video message: a square MP4."""
    return mp4(count, (side, side), fps)


def frame_count(data: bytes) -> int:
    """The frames a clip (MP4 or GIF) holds, decoded to the end."""
    with av.open(io.BytesIO(data), mode="r") as container:
        return len(list(container.decode(video=0)))
