"""Pre-flight for run_all.sh: which datasets a profile needs, which are missing, and fetching them.

``python -m srlib prepare configs/quick.yaml`` checks, before any work, every dataset the profile's
notebooks will read (training manifest, tuning split, validation set, benchmarks, figure images) under
the data root. What is missing is fetched with :func:`srlib.download.download` (checksums, resume,
atomic layout) after stating the sizes. When fetching is impossible it stops with one message that
names what is missing and the commands that fix it. It writes nothing but the fetched data.

It also fetches torchvision's ImageNet weights the profile can use (:func:`profile_weights`: VGG16 for the
SRGAN loss, AlexNet for LPIPS) into torch.hub's cache. They are optional: where they cannot be fetched it
says what is missing and what that costs (SRGAN trains without its perceptual term, the LPIPS column stays
empty) and goes on.
"""
import sys
from pathlib import Path

from .data import DEMO, available, data_root, entries, is_manifest, manifest_datasets
from .download import WEIGHTS, DownloadError, download, download_weights, find_source, hub_checkpoints


class DataMissing(RuntimeError):
    """Datasets a profile needs are absent and could not be fetched; the message says how to fix it."""


def profile_datasets(config_path):
    """Dataset names the run_all config ``config_path`` reads, in order (manifests stay as names)."""
    import yaml
    from .config import PROFILES, TrainConfig
    config = yaml.safe_load(Path(config_path).read_text()) or {}
    common = config.get("common") or {}
    train = {**TrainConfig().__dict__, **PROFILES[common.get("profile", "quick")]}
    names = list(train["train_sets"]) + [train["val_set"]] + ([train["tune_set"]] if train["tune_set"] else [])
    names += list(common.get("datasets") or [])
    sections = {k: v or {} for k, v in config.items() if k != "common"}
    sample = sections.get("01_data", {}).get("sample_dataset")
    names += [sample] if sample else []
    for key in ("figure1_images", "face_images"):
        names += [ds for ds, _ in sections.get("04_figures", {}).get(key) or []]
    return [n for n in dict.fromkeys(names) if n != DEMO]


def profile_weights(config_path):
    """The torchvision weights a run_all profile can use: VGG16 and AlexNet, except for profiles whose VGG16
    is random-init on purpose (smoke, the demo)."""
    import yaml
    from .config import PROFILES, TrainConfig
    common = (yaml.safe_load(Path(config_path).read_text()) or {}).get("common") or {}
    train = {**TrainConfig().__dict__, **PROFILES[common.get("profile", "quick")]}
    return [] if train["vgg_weights"] == "random" else ["vgg16", "alexnet"]


def fetch_weights(names, fetch=True, progress=True, out=None):
    """Fetch the weights ``names`` missing from torch.hub's cache; what cannot be fetched is reported (with its
    consequence and the fix) but is not an error. Returns the names fetched."""
    out = out or sys.stderr
    folder = hub_checkpoints()
    missing = [n for n in names if not (folder / WEIGHTS[n].filename).is_file()]
    if not missing:
        if names:
            print(f"weights: {', '.join(names)} found in {folder}", file=out)
        return []
    sizes = ", ".join(f"{n} ({WEIGHTS[n].size / 1e6:,.0f} MB)" for n in missing)
    print(f"weights: missing in {folder}: {sizes}", file=out)
    fetched, failed = [], []
    for name in missing if fetch else []:
        try:
            download_weights(name, folder, progress)
            fetched.append(name)
        except (DownloadError, OSError) as e:
            failed.append(f"{name}: {e}")
    left = [n for n in missing if n not in fetched]
    if left:
        why = {"vgg16": "SRGAN trains WITHOUT its perceptual (VGG16) term (vgg_on_missing='drop') and a finished "
                        "SRGAN run is reused as it is", "alexnet": "the LPIPS column stays empty"}
        print(f"weights: still missing: {', '.join(left)}" + (f" (could not fetch: {'; '.join(failed)})" if failed
              else "") + f". Without them {'; '.join(why[n] for n in left)}. fix: python -m srlib download "
              f"{' '.join(left)}", file=out)
    return fetched


def missing_datasets(names, root=None):
    """The dataset folders missing for ``names`` (a manifest needs its datasets and every listed image)."""
    need = []
    for name in names:
        if is_manifest(name):
            try:
                entries(name, root)
            except FileNotFoundError:
                need += manifest_datasets(name)   # refetch: a listed image is absent
        elif name not in available([name], root):
            need.append(name)
    return list(dict.fromkeys(need))


def _size(source):
    return f"{source.size / 1e6:,.0f} MB" if source.size else "size unknown"


def preflight(config_path, root=None, fetch=True, progress=True, out=None):
    """Make sure every dataset of the profile is under the data root; fetch what is missing.

    Returns the list of datasets fetched. Raises :class:`DataMissing` (nothing written but partial
    downloads kept for resuming) when something is missing and cannot be fetched.
    """
    out = out or sys.stderr
    root = data_root(root)
    names = profile_datasets(config_path)
    missing = missing_datasets(names, root)
    if not missing:
        print(f"data: all of {', '.join(names)} found under {root}", file=out)
        fetch_weights(profile_weights(config_path), fetch, progress, out)
        return []
    sources = {}
    for name in missing:
        try:
            source = find_source(name)
        except ValueError:
            raise DataMissing(f"dataset {name!r} is missing under {root} and srlib knows no source for it: "
                              f"put it at {root / name / 'HR'}") from None
        sources.setdefault(source.url, (source, []))[1].append(name)
    commands = " ".join(missing)
    fix = (f"fix: python -m srlib download {commands} --data-root {root}  (or set SRLIB_DATA to a folder that "
           f"has them; ./run_all.sh demo runs the pipeline on built-in images without any download)")
    plan = "; ".join(f"{', '.join(ns)} ({_size(s)})" for s, ns in sources.values())
    print(f"data: missing under {root}: {', '.join(missing)}; to fetch: {plan}", file=out)
    if not fetch:
        raise DataMissing(f"missing datasets under {root}: {', '.join(missing)}\n{fix}")
    fetched = []
    for source, ns in sources.values():
        try:
            root.mkdir(parents=True, exist_ok=True)
            download(source, root, progress=progress)
        except (DownloadError, OSError) as e:
            raise DataMissing(f"could not fetch {', '.join(ns)}: {e}\nmissing under {root}: "
                              f"{', '.join(m for m in missing if m not in fetched)}\n{fix}") from None
        fetched += ns
    still = missing_datasets(names, root)
    if still:
        raise DataMissing(f"after fetching, still missing or incomplete under {root}: {', '.join(still)} "
                          f"(a manifest image may be absent from the fetched data)\n{fix}")
    fetch_weights(profile_weights(config_path), fetch, progress, out)
    return fetched


def _cli(args):
    try:
        preflight(args.config, args.data_root, fetch=not args.check_only)
    except DataMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0
