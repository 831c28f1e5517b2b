"""The settings record an output carries, so a rerun knows what made it.

Every output LinearSR writes holds one JSON text (imageio.encode_image puts it in a metadata
chunk; the pixels are not touched):

    {"linearsr": VERSION,
     "settings": {...what was asked: models, size, sampler, input prior, tags, tta...},
     "image": {...what it resolved to for this file: prior, tags, passes...}}

A rerun compares `settings` (`differences`): equal -> skip the file, different -> redo it
(or keep it with --keep-existing); an output without a record was made by something else and is
a conflict unless --overwrite or --keep-existing says what to do. The input prior and the tags
are compared by what was used where the rerun knows that before reading the image (`used`,
engine/plan.planned_use), else as asked. Pure: no file access besides hashing the weights
files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import linearsr_cli

RECORD_VERSION = 1
_HASHES: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """'sha256:' + the first 16 hex digits of the file's SHA-256 (cached per path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = "sha256:" + h.hexdigest()[:16]
    return _HASHES[key]


def tag_setting(tags: Any | None) -> str:
    """A TagConfig (or None) as the text the record compares: off, auto[top_k/threshold/tagger]
    or the tags given for every image."""
    if tags is None or not tags.enabled:
        return "off"
    if tags.tags:
        return ", ".join(tags.tags)
    return f"auto(top{tags.top_k}, >{tags.threshold:g}, {tags.tagger})"


def settings(
    *,
    models: Mapping[int, str | Path],
    size: Any,
    sampler: Any,
    input: str,
    tags: Any | None,
    tta: bool,
) -> dict[str, Any]:
    """What a run asks for, as the record's comparable part: the weights files (by digest, per
    scale), the output size request (resize.SizeRequest), the sampler (config.SamplerConfig), the
    requested input prior (any string), the tag setting and tta."""
    return {
        "models": {f"x{scale}": file_digest(path) for scale, path in sorted(models.items())},
        "size": {"outscale": size.outscale, "width": size.width, "height": size.height, "fit": size.fit},
        "steps": sampler.steps,
        "solver": sampler.solver,
        "shift": sampler.shift,
        "seed": sampler.seed,
        "input": input,
        "tags": tag_setting(tags),
        "tta": bool(tta),
    }


def dumps(run: Mapping[str, Any], image: Mapping[str, Any]) -> str:
    """The record text for one output (ASCII JSON, keys sorted)."""
    doc = {"linearsr": linearsr_cli.__version__, "record": RECORD_VERSION, "settings": run, "image": image}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def loads(text: str | None) -> dict[str, Any] | None:
    """The record parsed, or None when `text` is not a LinearSR record."""
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "settings" not in doc or not isinstance(doc["settings"], dict):
        return None
    return doc


def _flat(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in value:
            yield from _flat(f"{prefix}.{key}" if prefix else str(key), value[key])
    else:
        yield prefix, value


_USED_FOR = {"input": "prior", "tags": "tags"}  # a requested setting -> what it resolves to (`used`)


def used(image: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an output used, from its record's `image` part: "prior" (None without priors) and
    "tags": "unused" when no pass could take tags, else the tag list ([] = none: off, or none
    found; both give the model's null token). Keys its record lacks are left out."""
    image = image or {}
    out: dict[str, Any] = {}
    if "prior" in image:
        out["prior"] = image["prior"]
    if "tag_source" in image:
        out["tags"] = "unused" if image["tag_source"] == "unused" else list(image.get("tags") or [])
    return out


def _same_use(key: str, stored_use: Mapping[str, Any], current_use: Mapping[str, Any]) -> bool:
    """Whether requested setting `key` differs without effect: this run's use of it is known and
    equals the stored output's, or (tags) this run cannot use tags at all."""
    name = _USED_FOR.get(key)
    if name is None or name not in current_use:
        return False
    if name == "tags" and current_use[name] == "unused":  # the rest being equal, neither run could use tags
        return True
    return name in stored_use and stored_use[name] == current_use[name]


def differences(
    stored: Mapping[str, Any], current: Mapping[str, Any], *,
    stored_use: Mapping[str, Any] | None = None, current_use: Mapping[str, Any] | None = None,
) -> list[str]:
    """'key: old -> new' for every setting that differs (nested keys dotted); [] when equal.
    The requested prior ("input") and tag setting ("tags") count only when they change what is
    used: not when `current_use` (what this run uses for every image, where known before the
    image is read: engine/plan.planned_use) equals `stored_use` (`used` of the stored record),
    e.g. --input real where auto had chosen real, or --tags under a preset that uses none."""
    old, new = dict(_flat("", stored)), dict(_flat("", current))
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b and not _same_use(key, stored_use or {}, current_use or {}):
            out.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out
