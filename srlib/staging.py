"""run_all's staging: a run writes into ``.staging/<profile>/``, started as a copy of the results folder, and
its results move into the results folder only when every notebook succeeded (:func:`promote`), so a failed or
interrupted run never changes committed results. Also the notebooks' typed parameters from a profile's config
(:func:`notebook_parameters`, :func:`relocate`) and the one-line cause of a failed notebook
(:func:`notebook_failure`). ``python -m srlib.staging start|promote|failure ...`` is what run_all.sh calls."""
import json
from pathlib import Path

from .lock import LOCK_NAME


def notebook_parameters(config_path, notebook, **extra):
    """Typed papermill parameters for ``notebook`` from a run_all config (YAML with a 'common' section
    and one section per notebook name), keeping only the parameters the notebook declares."""
    import papermill
    import yaml
    config = yaml.safe_load(Path(config_path).read_text()) or {}
    declared = papermill.inspect_notebook(str(notebook))
    name = Path(notebook).stem
    wanted = {**(config.get("common") or {}), **(config.get(name) or {}), **extra}
    unknown = set(config.get(name) or {}) | set(extra)
    unknown -= set(declared)
    if unknown:
        raise ValueError(f"{config_path}: {name} has no parameters {sorted(unknown)}")
    return {k: v for k, v in wanted.items() if k in declared}


def relocate(params, results_dir, stage_dir):
    """Notebook parameters with every path under ``results_dir`` moved under ``stage_dir``."""
    results_dir = str(results_dir).rstrip("/")
    out = {}
    for k, v in params.items():
        if isinstance(v, str) and (v == results_dir or v.startswith(results_dir + "/")):
            v = str(stage_dir).rstrip("/") + v[len(results_dir):]
        out[k] = v
    return out


SEEDED = ".seeded.json"      # in a staging folder: the files copied from the results folder, as (size, mtime)


PROMOTING = ".promoting"     # in a staging folder: promote has started (run_all finishes it on the next start)


def start(results_dir, stage_dir):
    """Start a staging folder as a copy of the results folder (times kept), recording every copied file's
    size and modification time in ``SEEDED``: :func:`promote` moves back only what a run changed or made."""
    import shutil
    results, stage = Path(results_dir), Path(stage_dir)
    stage.mkdir(parents=True, exist_ok=True)
    if results.is_dir():
        shutil.copytree(results, stage, dirs_exist_ok=True)
    record = {str(f.relative_to(stage)): [f.stat().st_size, f.stat().st_mtime_ns]
              for f in sorted(stage.rglob("*")) if f.is_file()}
    (stage / SEEDED).write_text(json.dumps(record))
    return stage


def promote(stage_dir, results_dir):
    """Move every file a run changed or made from its staging folder into ``results_dir``, replacing the
    file of the same path (each by renames: a file is either the old or the new one, never a mix). Files
    unchanged since :func:`start` stay where they are, so results changed meanwhile (another profile, a git
    pull) are not reverted; folders are merged, so the outputs of notebooks that ``--from`` skipped stay.
    A ``PROMOTING`` marker is written first: a promote stopped midway is finished by calling it again."""
    import shutil
    stage, results = Path(stage_dir), Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (stage / PROMOTING).touch()
    seeded = json.loads((stage / SEEDED).read_text()) if (stage / SEEDED).exists() else {}
    trash = results / f".replaced-{stage.name}"
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    _merge(stage, results, trash, stage, seeded)
    shutil.rmtree(trash)
    shutil.rmtree(stage)
    return results


def _merge(src, dst, trash, stage, seeded):
    for entry in sorted(src.iterdir()):
        rel = str(entry.relative_to(stage))
        if rel in (SEEDED, PROMOTING) or entry.name == LOCK_NAME:     # a killed run's lock file stays behind
            continue
        target = dst / entry.name
        if entry.is_dir() and target.is_dir():
            _merge(entry, target, trash, stage, seeded)
            continue
        if entry.is_file() and seeded.get(rel) == [entry.stat().st_size, entry.stat().st_mtime_ns]:
            continue                                   # the copy made by start(), untouched by the run
        if target.exists():
            target.rename(trash / f"{len(list(trash.iterdir()))}-{entry.name}")
        entry.rename(target)


def notebook_failure(path):
    """Where an executed notebook (papermill's output) failed, in one line: 'cell [N] (its first line of code):
    ErrorName: the first line of its message', N its execution count (or 'code cell N', counted in the
    executed notebook, where it has none); None when no cell holds an error."""
    try:
        cells = json.loads(Path(path).read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    code = [c for c in cells if c.get("cell_type") == "code"]
    for n, cell in enumerate(code, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                source = "".join(cell.get("source", "")).strip().splitlines()
                first = next((line for line in source if not line.startswith("#")), source[0] if source else "")
                message = (str(out.get("evalue", "")).strip().splitlines() or [""])[0]
                count = cell.get("execution_count")
                where = f"cell [{count}]" if count else f"code cell {n}"
                return f"{where} (`{first[:80]}`): {out.get('ename', 'error')}: {message[:300]}"
    return None


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "failure":
        print(notebook_failure(sys.argv[2]) or "no cell holds an error (stopped from outside?)")
    elif len(sys.argv) == 4 and sys.argv[1] == "promote":
        print(f"run_all: results moved into {promote(sys.argv[2], sys.argv[3])}/")
    elif len(sys.argv) == 4 and sys.argv[1] == "start":
        start(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m srlib.staging start|promote|failure ...")
