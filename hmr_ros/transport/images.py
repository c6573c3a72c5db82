"""``sensor_msgs/Image`` and ``CompressedImage`` to and from NumPy, strictly.

Raw images: ``rgb8``, ``bgr8`` and ``mono8`` (what cameras and rosbags give a person detector);
any other encoding, a buffer shorter than ``step * height``, a ``step`` smaller than a row, or
an empty image is refused with `ImageMessageError` saying what is wrong, so the node can log and
skip the frame. Compressed images: JPEG and PNG, decoded by OpenCV through ``rosbags-image``.
Decoded images are returned as contiguous ``(H, W, 3)`` RGB uint8 (mono is replicated).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import types

__all__ = ["ImageMessageError", "RAW_ENCODINGS", "image_to_rgb", "rgb_to_image",
           "compressed_to_rgb", "compressed_dimensions", "rgb_to_compressed", "message_to_rgb",
           "MAX_PIXELS"]

RAW_ENCODINGS = ("rgb8", "bgr8", "mono8")
#: Larger images are refused (a 16K x 16K frame is a mistake, not a camera).
MAX_PIXELS = 8192 * 8192


class ImageMessageError(ValueError):
    """An image message the node cannot use; the text says why."""


def image_to_rgb(msg: Any) -> np.ndarray:
    """A raw ``sensor_msgs/Image`` as (H, W, 3) RGB uint8."""
    enc = (msg.encoding or "").lower()
    if enc not in RAW_ENCODINGS:
        raise ImageMessageError(f"image encoding {msg.encoding!r} is not supported; use one of "
                                f"{', '.join(RAW_ENCODINGS)} (or a CompressedImage)")
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ImageMessageError(f"empty image ({w} x {h})")
    if h * w > MAX_PIXELS:
        raise ImageMessageError(f"image of {w} x {h} pixels exceeds the limit of {MAX_PIXELS}")
    channels = 1 if enc == "mono8" else 3
    step = int(msg.step)
    if step < w * channels:
        raise ImageMessageError(f"step {step} is smaller than a row of {w} {enc} pixels")
    data = np.asarray(msg.data, np.uint8).reshape(-1)
    if data.size < step * (h - 1) + w * channels:
        raise ImageMessageError(f"image data holds {data.size} bytes, a {w} x {h} {enc} image "
                                f"with step {step} needs {step * h}")
    rows = np.lib.stride_tricks.as_strided(data, (h, w * channels), (step, 1))
    img = rows.reshape(h, w, channels)
    if enc == "mono8":
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if enc == "bgr8":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def rgb_to_image(rgb: np.ndarray, header: Any = None, encoding: str = "rgb8") -> Any:
    """(H, W, 3) RGB uint8 (or (H, W) for mono8) as a ``sensor_msgs/Image``."""
    if encoding not in RAW_ENCODINGS:
        raise ImageMessageError(f"cannot write encoding {encoding!r}; use {RAW_ENCODINGS}")
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ImageMessageError(f"image must be uint8, got {arr.dtype}")
    if encoding == "mono8":
        arr = arr if arr.ndim == 2 else arr[..., 0]
        channels = 1
    else:
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageMessageError(f"expected (H, W, 3), got {arr.shape}")
        arr = arr[..., ::-1] if encoding == "bgr8" else arr
        channels = 3
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    fields = dict(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * channels,
                  data=arr.reshape(-1))
    if header is not None:
        fields["header"] = header
    return types.make("sensor_msgs/msg/Image", **fields)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A JPEG or PNG ``sensor_msgs/CompressedImage`` as (H, W, 3) RGB uint8."""
    from rosbags.image import ImageError, compressed_image_to_cvimage

    fmt = (msg.format or "").lower()
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageMessageError(f"compressed format {msg.format!r} is not supported (jpeg, png)")
    if len(msg.data) == 0:
        raise ImageMessageError("compressed image holds no data")
    width, height = compressed_dimensions(msg.data)
    if width * height > MAX_PIXELS or width <= 0 or height <= 0:
        raise ImageMessageError(f"compressed image of {width} x {height} pixels is empty or "
                                f"exceeds the limit of {MAX_PIXELS}")
    import cv2

    try:
        bgr = compressed_image_to_cvimage(msg, "bgr8")
    # rosbags-image asserts that OpenCV decoded something (AssertionError), or fails in
    # cvtColor (cv2.error) when run with -O
    except (ImageError, ValueError, TypeError, AssertionError, cv2.error) as exc:
        raise ImageMessageError(f"cannot decode the {msg.format!r} image: {exc}") from exc
    if bgr is None or bgr.size == 0:
        raise ImageMessageError(f"the {msg.format!r} data does not decode to an image")
    if bgr.ndim == 2:
        bgr = np.repeat(bgr[..., None], 3, axis=2)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def compressed_dimensions(data: Any) -> "tuple[int, int]":
    """(width, height) from a PNG or JPEG header, without decoding: a few kilobytes of PNG can
    claim a 9000 x 9000 image, so the size is checked before OpenCV allocates it."""
    raw = bytes(np.asarray(data, np.uint8)[:65536]) if not isinstance(data, bytes) else data
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24 and raw[12:16] == b"IHDR":
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if raw[:2] == b"\xff\xd8":
        p = 2
        while p + 4 <= len(raw):
            if raw[p] != 0xFF:
                break
            marker = raw[p + 1]
            if marker == 0xFF:  # fill byte
                p += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
                p += 2
                continue
            length = int.from_bytes(raw[p + 2:p + 4], "big")
            # SOF0-15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC)
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if p + 9 > len(raw):
                    break
                return (int.from_bytes(raw[p + 7:p + 9], "big"),
                        int.from_bytes(raw[p + 5:p + 7], "big"))
            p += 2 + length
    raise ImageMessageError("compressed data is not a PNG or JPEG image with a readable header")


def rgb_to_compressed(rgb: np.ndarray, header: Any = None, fmt: str = "jpeg",
                      quality: int = 90) -> Any:
    """(H, W, 3) RGB uint8 as a JPEG or PNG ``sensor_msgs/CompressedImage``."""
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ImageMessageError(f"compressed format must be jpeg or png, not {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png",
                           np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., ::-1]), params)
    if not ok:
        raise ImageMessageError(f"OpenCV could not encode the image as {fmt}")
    fields = dict(format=fmt, data=np.asarray(buf, np.uint8).reshape(-1))
    if header is not None:
        fields["header"] = header
    return types.make("sensor_msgs/msg/CompressedImage", **fields)


def message_to_rgb(msg: Any, type_name: Optional[str] = None) -> np.ndarray:
    """Either image type as (H, W, 3) RGB uint8."""
    name = type_name or getattr(msg, "__msgtype__", "")
    if name.endswith("CompressedImage"):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)
