"""TagConfig: how the tags that guide an image are chosen. Its own module so that the tagger and
the guidance logic both depend on it and not on each other."""

from __future__ import annotations

from dataclasses import dataclass

from linearsr_cli.errors import ConfigError
from linearsr_cli.tag.sources import normalize_tags, parse_tag_text

TAGGERS = ("lite0",)
# What `upscale --tags` / `eval --tags` / the API do when not told: follows the TAG measurement of
# the shipped weights (weights/MODEL_CARD.md): guidance that gains nothing stays one flag away.
DEFAULT_TAGS = "auto"


@dataclass(frozen=True)
class TagConfig:
    """How tags are chosen. `tags` (from --tags) is used for every image when non-empty."""

    enabled: bool = True
    tags: tuple[str, ...] = ()
    top_k: int = 5
    threshold: float = 0.1
    tagger: str = "lite0"

    def __post_init__(self) -> None:
        tags = parse_tag_text(self.tags) if isinstance(self.tags, str) else normalize_tags(self.tags)
        object.__setattr__(self, "tags", tags)
        if not 1 <= self.top_k <= 32:
            raise ConfigError(f"top_k must be in 1..32, got {self.top_k}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.tagger not in TAGGERS:
            raise ConfigError(f"tagger must be one of {', '.join(TAGGERS)}, got {self.tagger!r}")


def tag_config_for(option: str, *, no_tags: bool = False) -> TagConfig:
    """`--tags` as a TagConfig: "off" (or the hidden old --no-tags) = no guidance, "auto" = sidecar > metadata
    keywords > tagger, anything else = those tags for every image ("cat, grass")."""
    text = option.strip()
    if no_tags or text == "off":
        return TagConfig(enabled=False)
    if text == "auto":
        return TagConfig()
    tags = parse_tag_text(text)
    if not tags:
        raise ConfigError(f"--tags must be auto, off or a list of tags, got {option!r}")
    return TagConfig(tags=tags)
