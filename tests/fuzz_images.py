"""Schemathesis hooks for tests/test_serve_fuzz.py: real image files for the image media types.

The schema can say "binary", not "a file that decodes": without these, every positive request would
carry random bytes and get its documented 422. With them, positive cases send real images (PNG, JPEG,
BMP, WebP, GIF of any small size and colour, within the decoder's aspect-ratio bound), which must get
200; negative cases still send what the schema forbids. Loaded by name: SCHEMATHESIS_HOOKS=fuzz_images
with tests/ on PYTHONPATH.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

from foveal.data.decode import MAX_ASPECT_RATIO


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 64))
    # The decoder refuses an aspect ratio over MAX_ASPECT_RATIO as malformed (422): not a valid image.
    bound = int(MAX_ASPECT_RATIO)
    height = draw(st.integers(-(-width // bound), min(64, width * bound)))
    colour = tuple(draw(st.integers(0, 255)) for _ in range(3))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA"]))
    file_format = draw(st.sampled_from(["PNG", "JPEG", "BMP", "WEBP", "GIF"]))
    if file_format == "JPEG" and mode == "RGBA":
        mode = "RGB"
    image = Image.new("RGB", (width, height), colour).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=file_format)
    return buffer.getvalue()


for media_type in ("image/*", "application/octet-stream"):
    schemathesis.openapi.media_type(media_type, image_files())
