"""The JSON bodies the explorer's API accepts, and the limits on them.

Validation is strict (pydantic): a string is not a number, a misspelt field is an error, and a
latent coordinate is finite and bounded, so a bad body is a 422 before any model work.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_UPLOAD_BYTES = 1_000_000  # an uploaded image file; a 28x28 PNG is well under 1 kB
# base64 grows 4/3, plus the data-URL prefix and the JSON around it
MAX_BODY_BYTES = 4 * MAX_UPLOAD_BYTES // 3 + 4096
Z_LIMIT = 1e4  # |z| beyond this is no place a prior puts mass; refuse rather than decode inf
MAX_LATENT = 4096

Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-Z_LIMIT, le=Z_LIMIT)]


class Strict(BaseModel):
    # strict: "3" is not a class and true is not 1; forbid: a misspelt field is an error
    model_config = ConfigDict(extra="forbid", strict=True)


class DecodeRequest(Strict):
    z: list[Coordinate] = Field(min_length=1, max_length=MAX_LATENT, description="a latent point")
    y: int | None = Field(None, description="class (conditional model); ignored by a clustering")


class Source(Strict):
    """One input: a row of the run's data (`index`) or an uploaded image (`image`)."""

    index: int | None = Field(None, ge=0, description="row of the run's test split")
    image: str | None = Field(
        None,
        max_length=MAX_BODY_BYTES,
        description="a PNG or JPEG of the model's image size: a data URL or plain base64",
    )

    @model_validator(mode="after")
    def one_of(self) -> Source:
        if (self.index is None) == (self.image is None):
            raise ValueError("give exactly one of index (a row of the run's data) or image")
        return self


class EncodeRequest(Source):
    y: int | None = Field(None, description="class of an uploaded image (conditional model)")


class SampleRequest(Strict):
    n: int = Field(1, ge=1, le=64, description="how many samples")
    y: int | None = Field(None, description="class (conditional) or cluster (clustering model)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="for repeatable draws")


class InterpolateRequest(Strict):
    a: Source
    b: Source
    steps: int = Field(8, ge=2, le=64, description="points on the line, ends included")
    y: int | None = Field(None, description="class to decode with (conditional model)")
