"""niqe_live against an independent reference: BasicSR 1.4.2's own NIQE code, run from its source distribution
(scripts/niqe_reference.py), on real benchmark images. The sdist is looked for in cache/pkgs/ and fetched there
with pip when absent; the tests skip where it cannot be had, and fail instead under CI (CI set)."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from srlib import perceptual as P
from srlib.data import load_eval_set

REPO = Path(__file__).resolve().parents[1]


def _reference_module():
    spec = importlib.util.spec_from_file_location("niqe_reference", REPO / "scripts" / "niqe_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _reference_module()


@pytest.fixture(scope="module")
def basicsr():
    """(calculate_niqe, bytes of the sdist's niqe_pris_params.npz)."""
    sdist = R.sdist_path()
    if sdist is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the NIQE reference: {R.SDIST} could not be fetched into {R.CACHE}")
        pytest.skip(f"{R.SDIST} is not in {R.CACHE} and pip could not fetch it")
    return R.load_basicsr_niqe(sdist)


def _item(dataset, name, root):
    return next(it for it in load_eval_set(dataset, root, 4) if it.name == name)


def test_the_shipped_model_is_basicsrs_file(basicsr):
    assert basicsr[1] == P.NIQE_LIVE_FILE.read_bytes()


def test_baboon_as_basicsrs_matlab_check(basicsr, data_root):
    """Set14 baboon, Y, no crop: BasicSR's docstring has 5.7295763 (MATLAB R2021a: 5.72957338)."""
    hr = _item("Set14", "baboon", data_root).hr
    ours, ref = P.load_niqe_live().score(hr, shave=0), R.basicsr_niqe(basicsr[0], hr, 0)
    assert ours == pytest.approx(ref, abs=1e-3) and ref == pytest.approx(5.72957338, abs=1e-5)


@pytest.mark.slow
def test_agreement_on_hr_bicubic_and_sr_outputs(basicsr, data_root):
    """HR, bicubic and the committed L1 model's output of Set5 and of the Urban100 images whose flat regions
    give NaN blocks: every score within 1e-3 of BasicSR's (measured: at most 4.3e-4, on Set5 baby)."""
    items = list(R.outputs(["Set5"], data_root, models=("psnr",)))
    items += list(R.outputs(["Urban100"], data_root, models=("psnr",), images=["img016", "img094"]))
    table = R.compare(basicsr[0], items)
    assert len(table) == 21 and set(table.output) == {"HR", "bicubic", "psnr"}
    assert (table.nan_blocks > 0).sum() >= 5                       # flat blocks are exercised
    assert table["diff"].max() < 1e-3, table.sort_values("diff").tail(3).to_string()


@pytest.mark.slow
def test_the_larger_differences_are_the_half_scales_last_bits(basicsr, data_root, monkeypatch):
    """Where the two differ by more (Set14 foreman bicubic: 1.5e-3; Urban100 img062 SRGAN: 9.5e-3, both
    measured), the cause is the float32 rounding of the half-scale image alone: with BasicSR's own half-scale
    image in srlib's pipeline the scores agree to 1e-5."""
    from srlib.evaluate import bicubic
    foreman = _item("Set14", "foreman", data_root)
    img = bicubic(foreman.lr, 4)
    live, ref = P.load_niqe_live(), R.basicsr_niqe(basicsr[0], img, 4)
    assert abs(live.score(img) - ref) < 5e-3
    imresize = basicsr[0].__globals__["imresize"]                      # basicsr.utils.matlab_functions
    monkeypatch.setattr(P, "half_single", lambda y: imresize(np.asarray(y, np.float32) / 255., scale=0.5,
                                                             antialiasing=True) * 255.)
    assert live.score(img) == pytest.approx(ref, abs=1e-5)
