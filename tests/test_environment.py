"""One record of the machine (srlib.environment) behind every report of it: the notebooks' header, the speed
table's first row and the GPU run's archive all show what srlib.environment.record returns."""
import torch

from srlib import bench, environment, gpurun, study

FAKE = {"python": "3.0.1", **{m: f"{m}-9.9" for m in environment.LIBRARIES}, "host": "h", "cpu": "Some CPU 9000",
        "cpu_count": 7, "threads": 3, "bf16_instructions": True, "onednn_bf16": True, "device": "cpu",
        "cuda": None, "cudnn": None, "cuda_available": False}


def test_every_report_comes_from_the_one_record(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(environment, "record", lambda device=None, smi=False: calls.append(smi) or dict(FAKE))
    header = study.environment_report(tmp_path).splitlines()
    assert header[:3] == ["python 3.0.1", "torch torch-9.9", "torchvision torchvision-9.9"]
    assert header[-2:] == ["device cpu", f"data root {tmp_path.resolve()}"]
    line = bench.environment(torch.device("cpu"))
    assert line.startswith("device cpu; torch torch-9.9; python 3.0.1; 3 CPU threads; Some CPU 9000; "
                           "bf16 instructions: True; oneDNN bf16: True; load average ")
    assert gpurun.environment() == FAKE and calls == [False, False, True]     # the GPU run asks for nvidia-smi


def test_the_record_of_this_machine():
    env = environment.record("cpu")
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["cpu"] == environment.cpu_model()
    assert env["threads"] == torch.get_num_threads() and isinstance(env["bf16_instructions"], bool)
    assert environment.line(env).startswith(f"device cpu; torch {torch.__version__}; ")


def test_cpu_flags_and_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert environment.cpu_model(info) == "Test CPU" and environment.cpu_bf16_native(info)
    info.write_text("flags\t\t: fpu avx2\n")
    assert not environment.cpu_bf16_native(info) and environment.cpu_model(info)
    assert not environment.cpu_bf16_native(tmp_path / "absent")
