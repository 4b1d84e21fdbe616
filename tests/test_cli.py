"""The command line (srlib.cli) and the torch-free configuration (srlib.config)."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from srlib import config
from srlib.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["train", "evaluate", "upscale", "download", "prepare", "verify", "calibrate", "ablation", "bench",
            "gpu-pack", "gpu-train", "gpu-results"]


def _subparsers():
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return action.choices


def test_every_command_is_registered_and_its_handler_exists():
    subs = _subparsers()
    assert sorted(subs) == sorted(COMMANDS)
    for name, parser in subs.items():
        module, func = parser._defaults["handler"].split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_help_and_config_without_torch():
    """`--help` of every command, and srlib.config, work with torch's import blocked: the CLI imports its
    handlers only when a command runs (one broken import breaks only its own commands)."""
    code = ("import runpy, sys\n"
            "sys.modules['torch'] = None\n"            # import torch now raises ImportError
            "import srlib.config\n"
            "srlib.config.make_config('attention', 'smoke')\n"
            f"for c in {COMMANDS!r}:\n"
            "    sys.argv = ['srlib', c, '--help']\n"
            "    try:\n"
            "        runpy.run_module('srlib', run_name='__main__')\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, (c, e.code)\n"
            "print('loaded:', sorted(m for m in sys.modules if m.startswith('srlib')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for c in COMMANDS:
        assert f"usage: python -m srlib {c} " in out.stdout, c
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == "loaded: ['srlib', 'srlib.cli', 'srlib.config']", loaded


def test_a_broken_handler_fails_only_its_command(monkeypatch, capsys):
    """A handler module that cannot be imported does not stop the parser (or the other commands)."""
    import srlib.cli as cli
    parser = cli.build_parser()
    args = parser.parse_args(["calibrate", "somewhere"])
    monkeypatch.setitem(sys.modules, "srlib.calibration", None)
    with pytest.raises(ImportError):
        args.func(args)
    assert parser.parse_args(["prepare", "configs/quick.yaml"]).command == "prepare"


def test_saved_config_reads_back_as_the_dataclass():
    cfg = config.make_config("attention", "quick", generator={"padding": "reflect"}, seed=3)
    again = config.from_saved(json.loads(json.dumps(config.plain(cfg))))
    assert isinstance(again, config.TrainConfig) and again.betas == cfg.betas
    assert config.plain(again) == config.plain(cfg)
    with_unknown = {**config.plain(cfg), "removed_field": 1}
    assert config.plain(config.from_saved(with_unknown)) == config.plain(cfg)


def test_committed_runs_configs_read_back_unchanged():
    """Every committed run's meta.json config is the plain form of the dataclass read back from it (so the
    runs are still reused: train compares plain(cfg) with the saved config)."""
    metas = sorted((ROOT / "results").glob("**/meta.json"))
    assert metas, "no committed run"
    for meta in metas:
        saved = json.loads(meta.read_text())["config"]
        assert config.plain(config.from_saved(saved)) == saved, meta
