"""Image content parts on the wire: what the chat and Responses schemas accept and refuse."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from shoal.protocol.chat import ChatCompletionRequest, ImagePart
from shoal.protocol.images import check_image_url
from shoal.protocol.responses import InputImage, InputMessage, ResponsesRequest

PNG = "data:image/png;base64,iVBORw0KGgo="  # the PNG signature: valid base64, a real image's first bytes
HTTPS = "https://example.com/cat.jpg"


def chat(*parts: dict[str, Any], role: str = "user") -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": role, "content": list(parts)}]})


def responses(*parts: dict[str, Any], role: str = "user") -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": [{"role": role, "content": list(parts)}]})


def errors(exc: pytest.ExceptionInfo[pydantic.ValidationError]) -> list[str]:
    return [str(e["msg"]) for e in exc.value.errors()]


@pytest.mark.parametrize("url", [HTTPS, "http://127.0.0.1:9/x.png", PNG, "data:image/jpeg;base64,/9j/4AAQ",
                                 "data:image/webp;base64,UklGRg==", "data:IMAGE/GIF;base64,R0lGODlh"])
def test_accepted_urls(url: str) -> None:
    assert check_image_url(url) == url


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/x.png", "http(s) URL or a 'data:image"),
    ("cat.png", "http(s) URL or a 'data:image"),
    ("https://", "no host"),
    ("data:image/png,iVBORw0KGgo=", "base64-encoded"),
    ("data:image/png;base64", "base64-encoded"),
    ("data:image/tiff;base64,SUkqAA==", "unsupported image type 'image/tiff'"),
    ("data:text/plain;base64,aGk=", "unsupported image type"),
    ("data:image/png;base64,not base64!", "not valid base64"),
    ("data:image/png;base64,", "empty image"),
])
def test_refused_urls(url: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        check_image_url(url)
    assert why in str(info.value)


def test_chat_image_part_keeps_order_and_detail() -> None:
    body = chat({"type": "text", "text": "What is"}, {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
                {"type": "text", "text": " this?"}, {"type": "image_url", "image_url": {"url": HTTPS}})
    msg = body.messages[0]
    assert msg.text() == "What is this?"
    assert [(i.url, i.detail) for i in msg.images()] == [(PNG, "low"), (HTTPS, "auto")]
    assert isinstance(msg.content, list) and isinstance(msg.content[1], ImagePart)


@pytest.mark.parametrize(("part", "why"), [
    ({"type": "image_url"}, "Field required"),
    ({"type": "image_url", "image_url": {}}, "Field required"),
    ({"type": "image_url", "image_url": {"url": "cat.png"}}, "must be an http(s) URL"),
    ({"type": "image_url", "image_url": {"url": PNG, "detail": "ultra"}}, "'auto', 'low' or 'high'"),
    ({"type": "image", "image_url": {"url": PNG}}, "does not match any of the expected tags"),
])
def test_chat_bad_image_parts(part: dict[str, Any], why: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        chat(part)
    assert any(why in msg for msg in errors(info)), errors(info)
    # The tagged union reports the bad part only, not "content should be a string" as well.
    assert not any("valid string" in msg for msg in errors(info))


@pytest.mark.parametrize("role", ["system", "developer", "assistant"])
def test_chat_images_only_from_the_user(role: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="only allowed in messages with role 'user'"):
        chat({"type": "image_url", "image_url": {"url": PNG}}, role=role)


def test_responses_input_image() -> None:
    body = responses({"type": "input_text", "text": "Describe"},
                     {"type": "input_image", "image_url": HTTPS, "detail": "high"})
    assert isinstance(body.input, list)
    item = body.input[0]
    assert isinstance(item, InputMessage) and item.text() == "Describe"
    assert [(i.image_url, i.detail) for i in item.images()] == [(HTTPS, "high")]
    assert responses({"type": "input_image", "image_url": PNG}).input[0].images()[0].detail == "auto"  # type: ignore[union-attr]


@pytest.mark.parametrize(("part", "why"), [
    ({"type": "input_image", "file_id": "file-abc"}, "'file_id' is not supported"),
    ({"type": "input_image", "file_id": "file-abc", "image_url": PNG}, "'file_id' is not supported"),
    ({"type": "input_image"}, "Field required"),
    ({"type": "input_image", "image_url": "data:image/png;base64,@@"}, "not valid base64"),
    ({"type": "input_image", "image_url": HTTPS, "detail": "max"}, "'auto', 'low' or 'high'"),
])
def test_responses_bad_image_parts(part: dict[str, Any], why: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        responses(part)
    assert why in errors(info)[0], errors(info)  # the first error (the one a 400 reports) is the right one


def test_responses_images_only_from_the_user() -> None:
    with pytest.raises(pydantic.ValidationError, match="only allowed in messages with role 'user'"):
        responses({"type": "input_image", "image_url": PNG}, role="assistant")


def test_input_image_round_trips_through_a_dump() -> None:
    part = InputImage.model_validate({"type": "input_image", "image_url": PNG, "detail": "low"})
    assert part.model_dump(exclude_none=True) == {"type": "input_image", "image_url": PNG, "detail": "low"}
