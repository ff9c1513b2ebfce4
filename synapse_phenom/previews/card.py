"""The preview card: what every delivery path (Synapse, Lambda, MCP) hands out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DESCRIPTION_MAX = 200
MAX_FACTS = 2


class Fact(BaseModel):
    """A key/value shown under the card, e.g. ``Author: Ada`` or ``Published: 2026-05-01``."""

    model_config = ConfigDict(frozen=True)

    label: str
    value: str


class CardImage(BaseModel):
    """The card image re-hosted in the homeserver's media repository."""

    model_config = ConfigDict(frozen=True)

    mxc: str
    mimetype: str
    size: int
    width: int | None = None
    height: int | None = None


class Card(BaseModel):
    """A Phenom link preview card."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="the link the card is for (normalised)")
    canonical_url: str = Field(
        description="the page's canonical URL (og:url, rel=canonical, or the link)"
    )
    title: str
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    site_name: str | None = None
    kind: str = Field(
        default="website", description="og:type-like: website, article, video, profile, event, ..."
    )
    facts: tuple[Fact, ...] = Field(default=(), max_length=MAX_FACTS)
    theme_color: str | None = Field(default=None, description="#rrggbb")
    image_url: str | None = Field(
        default=None, description="the image as the page names it (not fetched by clients)"
    )
    image: CardImage | None = Field(
        default=None, description="the image in the media repository, when re-hosted"
    )
