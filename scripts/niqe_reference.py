"""srlib's ``niqe_live`` beside an independent reference: BasicSR's own NIQE, run from its source distribution.

BasicSR 1.4.2's ``basicsr/metrics/niqe.py`` (Apache-2.0; its docstring gives 5.7295763 on Set14 baboon against
MATLAB's 5.72957338) is read from the sdist on PyPI, never installed and never copied into srlib. ``import
basicsr`` fails on current torchvision, so only the modules niqe.py needs are loaded, by file path, under stub
packages: metrics/niqe.py, metrics/metric_util.py, utils/color_util.py, utils/matlab_functions.py and
utils/registry.py (numpy, scipy and torch). niqe.py imports cv2 for its 'gray' conversion only; where OpenCV
is absent a stand-in that raises on any use takes its place. Its pristine model is the sdist's own npz.

    python scripts/niqe_reference.py                      # Set5 and Set14: HR, bicubic, the committed models
    python scripts/niqe_reference.py --datasets BSD100 Urban100 --limit 10 --csv niqe_reference.csv
    python scripts/niqe_reference.py --datasets Urban100 --images img016 img023 img062 img094   # flat blocks

The sdist is looked for in ``cache/pkgs/`` and fetched there with pip when absent (its sha256 is pinned).
For each image and output it prints srlib's value, BasicSR's, their difference and how many of the 96px
blocks have NaN features (flat blocks), with the 4-pixel shave of srlib's measures; the largest difference
last. Needs ``SRLIB_DATA`` (or ``--data-root``) with the benchmarks.
"""
import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SDIST = "basicsr-1.4.2.tar.gz"
SDIST_SHA256 = "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87"
CACHE = REPO / "cache" / "pkgs"
MODULES = ("metrics/niqe.py", "metrics/metric_util.py", "metrics/niqe_pris_params.npz", "utils/color_util.py",
           "utils/matlab_functions.py", "utils/registry.py")


def sdist_path(folder=CACHE, fetch=True):
    """The BasicSR 1.4.2 sdist in ``folder`` (fetched with ``pip download`` when absent and ``fetch``), checked
    against its sha256; None when it is absent and cannot be fetched. pip must not build it: the build
    dependencies (torch among them) are taken from this environment (``--no-build-isolation``), which pip
    uses only to read the package's metadata."""
    path = Path(folder) / SDIST
    if not path.exists() and fetch:
        Path(folder).mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "basicsr",
                        "--no-build-isolation", "basicsr==1.4.2", "-d", str(folder)], check=False, timeout=300)
    if not path.exists():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise ValueError(f"{path}: sha256 {digest}, expected {SDIST_SHA256}")
    return path


class _NoCV2(types.ModuleType):
    def __getattr__(self, name):
        raise RuntimeError(f"cv2.{name}: OpenCV is not installed; the NIQE reference does not use it for 'y'")


def load_basicsr_niqe(sdist):
    """BasicSR's ``calculate_niqe`` and the bytes of its ``niqe_pris_params.npz``, loaded from ``sdist``."""
    import importlib

    root = Path(tempfile.mkdtemp(prefix="basicsr-"))
    with tarfile.open(sdist) as t:
        for rel in MODULES:
            member = t.getmember(f"basicsr-1.4.2/basicsr/{rel}")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(t.extractfile(member).read())
    stubs = {}
    for name, folder in (("basicsr", root), ("basicsr.metrics", root / "metrics"), ("basicsr.utils", root / "utils")):
        stubs[name] = types.ModuleType(name)
        stubs[name].__path__ = [str(folder)]        # a package whose __init__ (the whole of BasicSR) never runs
    try:
        import cv2  # noqa: F401
    except ImportError:
        stubs["cv2"] = _NoCV2("cv2")
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        color = importlib.import_module("basicsr.utils.color_util")
        stubs["basicsr.utils"].bgr2ycbcr = color.bgr2ycbcr          # what metric_util takes from basicsr.utils
        niqe = importlib.import_module("basicsr.metrics.niqe")
    finally:
        for k, v in saved.items():                  # leave no stand-in behind for other imports
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        for k in [k for k in sys.modules if k.startswith("basicsr.")]:
            sys.modules.pop(k)
    return niqe.calculate_niqe, (root / "metrics" / "niqe_pris_params.npz").read_bytes()


def basicsr_niqe(calculate_niqe, rgb, shave):
    """BasicSR's NIQE of a uint8 RGB image (it expects BGR, as cv2 reads), Y channel, ``shave`` cropped."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # scipy.ndimage.filters deprecation, NaN blocks' warnings
        return calculate_niqe(np.ascontiguousarray(rgb[..., ::-1]), crop_border=shave, input_order="HWC",
                              convert_to="y")


def nan_blocks(rgb, shave):
    from srlib.perceptual import niqe_features
    f, _ = niqe_features(rgb, 96, shave, "live")
    return int(np.isnan(f).any(axis=1).sum())


def outputs(datasets, root, limit=None, models=("psnr", "srgan"), images=None):
    """(dataset, image, output, uint8 RGB) for HR, bicubic and the committed generators of ``models``, on the
    first ``limit`` images of each dataset, or those named in ``images``."""
    from srlib.data import load_eval_set
    from srlib.evaluate import bicubic
    from srlib.infer import load_generator, upscale_array
    from srlib.metrics import to_uint8
    gens = {m: load_generator(REPO / "results" / "train" / m / "generator.safetensors")[0] for m in models
            if (REPO / "results" / "train" / m / "generator.safetensors").exists()}
    for ds in datasets:
        for it in [it for it in load_eval_set(ds, root, 4) if images is None or it.name in images][:limit]:
            yield ds, it.name, "HR", it.hr
            yield ds, it.name, "bicubic", bicubic(it.lr, 4)
            for m, g in gens.items():
                yield ds, it.name, m, to_uint8(upscale_array(g, it.lr, 4))


def compare(calculate_niqe, items, shave=4):
    """Rows (dataset, image, output, srlib, basicsr, diff, blocks, nan_blocks) for (dataset, image, output, rgb)."""
    import pandas as pd
    from srlib.perceptual import load_niqe_live, niqe_blocks
    live = load_niqe_live()
    rows = []
    for ds, name, out, rgb in items:
        ours, ref = live.score(rgb, shave), basicsr_niqe(calculate_niqe, rgb, shave)
        rows.append(dict(dataset=ds, image=name, output=out, srlib=ours, basicsr=ref, diff=abs(ours - ref),
                         blocks=niqe_blocks(rgb.shape, 96, shave), nan_blocks=nan_blocks(rgb, shave)))
    return pd.DataFrame(rows)


def main(argv=None):
    from srlib.data import data_root
    from srlib.perceptual import NIQE_LIVE_FILE
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=None, help="at most this many images per dataset")
    p.add_argument("--images", nargs="+", default=None, help="only these images (names without extension)")
    p.add_argument("--shave", type=int, default=4)
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    sdist = sdist_path()
    if sdist is None:
        print(f"no {SDIST} in {CACHE} and pip could not fetch it", file=sys.stderr)
        return 2
    calculate_niqe, params = load_basicsr_niqe(sdist)
    same = params == NIQE_LIVE_FILE.read_bytes()
    print(f"{NIQE_LIVE_FILE.name}: {'identical to' if same else 'DIFFERENT FROM'} the sdist's file")
    items = outputs(args.datasets, data_root(args.data_root), args.limit, images=args.images)
    table = compare(calculate_niqe, items, args.shave)
    import pandas as pd
    with pd.option_context("display.max_rows", None, "display.width", 160):
        print(table.round(7).to_string(index=False))
    worst = table.loc[table["diff"].idxmax()]
    print(f"max |srlib - BasicSR| = {worst['diff']:.2e} ({worst['dataset']} {worst['image']}, {worst['output']}); "
          f"{len(table)} outputs, {int((table.nan_blocks > 0).sum())} with NaN blocks")
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0 if same and worst["diff"] < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
