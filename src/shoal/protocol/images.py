"""Image inputs on the wire: the URL and ``detail`` checks both APIs share."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

ImageDetail = Literal["auto", "low", "high"]

IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp")
"""What OpenAI and Anthropic both accept (``image/jpg`` is a common misspelling of jpeg)."""


def check_image_url(url: str) -> str:
    """``url`` if it is an http(s) URL or a base64 ``data:image/...`` URL; ValueError saying why not.

    A data URL's payload is decoded once here, so a corrupt image is a 400 from
    Shoal rather than an upstream's error halfway through routing.
    """
    if url.startswith(("https://", "http://")):
        if len(url.split("://", 1)[1]) == 0:
            raise ValueError("the image URL has no host")
        return url
    if not url.startswith("data:"):
        raise ValueError("the image URL must be an http(s) URL or a 'data:image/...;base64,' URL")
    head, comma, data = url[len("data:"):].partition(",")
    media_type, _, encoding = head.partition(";")
    if not comma or encoding.lower() != "base64":
        raise ValueError("a data URL image must be base64-encoded ('data:image/png;base64,...')")
    if media_type.lower() not in IMAGE_MEDIA_TYPES:
        raise ValueError(f"unsupported image type {media_type!r}; supported: png, jpeg, gif, webp")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data URL's base64 payload is not valid base64") from None
    if not decoded:
        raise ValueError("the data URL holds an empty image")
    return url
