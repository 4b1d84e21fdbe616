"""The three environment files agree, pyproject declares every import, ruff is configured, the API
is importable, and the tracked repository stays small enough to travel to a GPU machine."""
import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULE_TO_DIST = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml"}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements():
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_requirements_environment_and_pyproject_agree():
    pins = requirements()
    env = {}
    for line in (REPO / "environment.yml").read_text().splitlines():
        m = re.match(r"\s+- ([A-Za-z0-9_.-]+)==(\S+)$", line)
        if m:
            env[_norm(m.group(1))] = m.group(2)
    assert env == pins
    project = pyproject()["project"]
    declared = [*project["dependencies"], *(d for ds in project["optional-dependencies"].values() for d in ds)]
    declared = {_norm(re.split(r"[<>=\[ ]", d)[0]) for d in declared}
    assert declared == set(pins), (declared ^ set(pins))


STUDY_MODULES = ("study.py", "bench.py", "ablation.py", "extent.py", "explore.py", "figures.py", "report.py",
                 "staging.py")


def test_every_third_party_import_of_srlib_is_a_core_dependency():
    core = {_norm(d) for d in pyproject()["project"]["dependencies"]}
    extras = {k: {_norm(d) for d in v} for k, v in pyproject()["project"]["optional-dependencies"].items()}
    study = extras["study"]
    stdlib = set(sys.stdlib_module_names)
    for path in (REPO / "srlib").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top in ("srlib", "IPython"):
                    continue
                dist = _norm(MODULE_TO_DIST.get(top, top))
                # the study's own modules may use the [study] extra, perceptual.py the [stlpips] extra (imported
                # where present); the rest of srlib only core packages
                allowed = core | study if path.name in STUDY_MODULES else \
                    core | extras["stlpips"] if path.name == "perceptual.py" else core
                assert dist in allowed, f"{path.name} imports {name} ({dist}), not declared in pyproject"


def test_public_api_is_importable():
    import srlib
    from srlib import evaluate, load_upscaler, make_config, train, upscale_image  # noqa: F401
    assert set(srlib.__all__) >= {"load_upscaler", "upscale_image", "evaluate", "train", "make_config"}
    assert make_config("psnr", "smoke").model == "psnr"
    with pytest.raises(AttributeError):
        srlib.nothing_here  # noqa: B018


def test_ruff_is_configured_and_passes():
    ruff = pytest.importorskip("ruff")   # noqa: F841  (a [dev] dependency)
    assert pyproject()["tool"]["ruff"]["line-length"] == 120
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "srlib", "tests", "scripts"], cwd=REPO,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_tracked_repository_stays_under_30_mb():
    """The GPU machine receives the repository plus carried data within 64 MiB: 30 MB leaves 34 for the data."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    total = sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file())
    assert total < 30e6, f"tracked files hold {total / 1e6:.1f} MB"


def test_license_and_citation_exist():
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert "Wu" in (REPO / "CITATION.cff").read_text()


def test_no_module_imports_from_a_floor_above_it():
    """docs/architecture.md's floors are the imports: every srlib module is on one floor, and no import of
    srlib's (at module level or inside a function) reaches a floor above the importing module's."""
    floors = {}
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        m = re.match(r"\| (\d)\. [^|]+\| ([^|]+)\|", line)
        if m:
            floors.update({name: int(m.group(1)) for name in re.findall(r"`(\w+)`", m.group(2))})
    modules = {f.stem for f in (REPO / "srlib").glob("*.py")} - {"__init__", "__main__"}
    assert modules <= set(floors), f"modules on no floor of docs/architecture.md: {modules - set(floors)}"
    upward = []
    for name in sorted(modules):
        for node in ast.walk(ast.parse((REPO / "srlib" / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
                upward += [f"{name} (floor {floors[name]}) -> {t} (floor {floors[t]}), line {node.lineno}"
                           for t in (x.split(".")[0] for x in targets) if floors.get(t, -1) > floors[name]]
    assert not upward, upward
