"""The image a request carries: its bytes from a form or the raw body, then decoded at the model's size.

By the time a route reads the body, the limits layer bounds its size and its arrival time; the form
parser is bounded to one file and a few fields. Decoding runs off the event loop, bounded by the
decoder's pixel and aspect-ratio limits (data/decode.py), and inside the request's --timeout.
"""

from __future__ import annotations

import asyncio

import torch
from fastapi import Request
from starlette.datastructures import UploadFile

from foveal.data.decode import ImageDecodeError
from foveal.data.preprocess import Preprocessing
from foveal.serving.errors import ApiError

ACCEPTED_TYPES = "image/* (the raw body), multipart/form-data (a file field) or application/octet-stream"


async def read_image_bytes(request: Request) -> bytes:
    """The image's bytes from a multipart form's first file part or from the raw body (image/* type)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=16)
        files = [value for value in form.values() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(
                422, "the form has no file; send the image as a file field, e.g. curl -F file=@cat.jpg"
            )
        part_type = (files[0].content_type or "").split(";")[0].strip().lower()
        if part_type and not _is_image_type(part_type):
            raise ApiError(
                415, f"the uploaded file is {part_type!r}, not an image; send a JPEG, PNG, ... file."
            )
        return await files[0].read()
    if not _is_image_type(content_type):
        shown = content_type or "no Content-Type"
        raise ApiError(415, f"{shown} is not an image type; send {ACCEPTED_TYPES}.")
    return await request.body()


def _is_image_type(content_type: str) -> bool:
    return content_type.startswith("image/") or content_type == "application/octet-stream"


async def decode_upload(data: bytes, preprocessing: Preprocessing, max_pixels: int) -> torch.Tensor:
    """The image as the model's uint8 input (3, S, S), decoded as its `preprocessing` says on a worker
    thread; 422 when it does not decode (not an image, truncated, over the pixel limit, too thin)."""
    try:
        return await asyncio.to_thread(preprocessing.decode, data, max_pixels=max_pixels)
    except ImageDecodeError as error:
        raise ApiError(422, f"the image could not be read: {error.reason}") from None
