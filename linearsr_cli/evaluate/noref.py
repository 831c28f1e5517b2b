"""No-reference quality scores (lower is better for both), each usable only when its data is there.

    NIQE     linearsr_cli.evaluate.niqe with niqe_pris_params.npz
    BRISQUE  (Mittal, Moorthy, Bovik 2012) through OpenCV contrib's cv2.quality.QualityBRISQUE
             with brisque_model_live.yml and brisque_range_live.yml from Debian's opencv-data

scripts/fetch_metric_data.sh puts the three files in DEFAULT_DATA_DIR. A metric whose data or
package is missing is reported with the reason instead of failing the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate.niqe import PARAMS_FILE, NiqeModel, load_niqe_model, niqe

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
BRISQUE_MODEL = "brisque_model_live.yml"
BRISQUE_RANGE = "brisque_range_live.yml"
FETCH_HINT = "run scripts/fetch_metric_data.sh"
NOREF_METRICS = ("niqe", "brisque")


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB in [0, 1] -> (H, W, 3) uint8 BGR, OpenCV's layout."""
    arr = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    rgb8 = np.round(arr * 255.0).astype(np.uint8).transpose(1, 2, 0)  # (H, W, 3)
    return np.ascontiguousarray(rgb8[..., ::-1])


def brisque_scorer(data_dir: Path) -> Callable[[np.ndarray], float]:
    """A BRISQUE function of (3, H, W) RGB in [0, 1]; raises ConfigError naming what is missing."""
    import cv2

    if not hasattr(cv2, "quality"):
        raise ConfigError(
            "cv2.quality is missing: BRISQUE needs opencv-contrib-python-headless "
            "(pip uninstall -y opencv-python-headless && pip install opencv-contrib-python-headless)"
        )
    model, ranges = data_dir / BRISQUE_MODEL, data_dir / BRISQUE_RANGE
    missing = [p.name for p in (model, ranges) if not p.is_file()]
    if missing:
        raise ConfigError(f"BRISQUE data {', '.join(missing)} not in {data_dir} ({FETCH_HINT})")
    scorer = cv2.quality.QualityBRISQUE_create(str(model), str(ranges))

    def score(img: np.ndarray) -> float:
        return float(scorer.compute(to_bgr8(img))[0])

    return score


@dataclass
class NoReference:
    """The no-reference metrics that can run here; `unavailable` maps the others to a reason."""

    data_dir: Path
    scorers: dict[str, Callable[[np.ndarray], float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path | None = None, names: tuple[str, ...] = NOREF_METRICS) -> NoReference:
        data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
        out = cls(data_dir=data_dir)
        for name in names:
            try:
                if name == "niqe":
                    model: NiqeModel = load_niqe_model(data_dir / PARAMS_FILE)
                    out.scorers[name] = lambda img, m=model: niqe(img, m)
                elif name == "brisque":
                    out.scorers[name] = brisque_scorer(data_dir)
                else:
                    raise ConfigError(f"unknown no-reference metric {name!r}")
            except ConfigError as exc:
                out.unavailable[name] = str(exc)
        return out

    def score(self, img: np.ndarray) -> dict[str, float | None]:
        """Every requested metric on one image; None where it is unavailable or undefined
        (e.g. NIQE on an image smaller than one 96x96 patch)."""
        result: dict[str, float | None] = {name: None for name in self.unavailable}
        for name, fn in self.scorers.items():
            try:
                result[name] = fn(img)
            except ConfigError:
                result[name] = None
        return result
