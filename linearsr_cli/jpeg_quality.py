"""The JPEG quality a file was saved with, read from its quantisation tables (pure numpy).

libjpeg scales the example tables of ITU-T T.81 Annex K by the quality setting; the setting whose
scaled tables are closest to a file's tables is its quality. Training uses it to halve strongly
compressed photos, `--input auto` as evidence that an input is a camera or web JPEG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from linearsr_cli.errors import ImageReadError

# ITU-T T.81 Annex K example tables (natural order), which libjpeg scales by the quality setting.
LUMA_Q50 = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
CHROMA_Q50 = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip


def ijg_table(base: Sequence[int], quality: int) -> np.ndarray:
    """libjpeg's quantisation table for `quality` (jcparam.c: 5000/q below 50, 200 - 2q above)."""
    factor = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip((np.asarray(base) * factor + 50) // 100, 1, 255)


def estimate_jpeg_quality(tables: dict[int, Sequence[int]]) -> int:
    """The libjpeg quality (1..100) whose tables are closest (L1) to a JPEG's quantisation tables
    (natural order, as PIL's `Image.quantization`); table 0 is luma, table 1 chroma."""
    if 0 not in tables:
        raise ImageReadError("JPEG has no luminance quantisation table")
    bases = [(np.asarray(tables[0]), LUMA_Q50)]
    if 1 in tables:
        bases.append((np.asarray(tables[1]), CHROMA_Q50))
    errors = [sum(np.abs(ijg_table(b, q) - t).sum() for t, b in bases) for q in range(1, 101)]
    return int(np.argmin(errors)) + 1
