"""The one record of the machine and libraries a result was produced on.

Used by the notebooks' headers (:func:`report`, via ``study.environment_report``), the speed table's first row
(:func:`line`, ``srlib.bench``), the GPU run's archive (:func:`record`, ``srlib.gpurun``) and each training
run's meta.json (:func:`cpu_model`, :func:`cpu_bf16_native`). Importing it loads no torch.
"""
import importlib
import os
import platform
import subprocess

LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "PIL", "skimage", "pandas", "matplotlib", "seaborn",
             "safetensors")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name (Linux), else what platform reports."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_native(cpuinfo="/proc/cpuinfo"):
    """The CPU itself has bf16 instructions (AMX or AVX512-BF16), read from its flags (Linux); False when
    they cannot be read. Unlike :func:`srlib.infer.cpu_bf16_supported`, this ignores what oneDNN can emulate."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in CPU_BF16_FLAGS)
    except OSError:
        pass
    return False


def versions(libraries=LIBRARIES):
    """{library: version, or None where it is not installed}."""
    out = {}
    for mod in libraries:
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def record(device=None, smi=False):
    """The machine as a dict: python and library versions, host, CPU (model, cores, threads, bf16), the device
    and, with CUDA, the GPU (name, memory, capability), CUDA and cuDNN; ``smi``: also nvidia-smi's line."""
    import torch

    from .device import cpu_bf16_supported, pick_device
    device = pick_device(device)
    env = {"python": platform.python_version(), **versions(), "host": platform.node(), "cpu": cpu_model(),
           "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "bf16_instructions": cpu_bf16_native(),
           "onednn_bf16": cpu_bf16_supported(), "device": str(device), "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(device if device.type == "cuda" else 0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1), capability=f"{p.major}.{p.minor}")
    if smi:
        try:
            env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                                "--format=csv,noheader"], capture_output=True, text=True,
                                               timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["nvidia_smi"] = None
    return env


def line(env):
    """One line of :func:`record`: device, torch, python, threads, then the CPU or the GPU."""
    s = f"device {env['device']}; torch {env['torch']}; python {env['python']}; {env['threads']} CPU threads"
    if env["device"].startswith("cpu"):
        s += f"; {env['cpu']}; bf16 instructions: {env['bf16_instructions']}; oneDNN bf16: {env['onednn_bf16']}"
    elif env.get("gpu"):
        s += (f"; {env['gpu']}, capability {env['capability']}, {env['gpu_memory_gib']:.0f} GiB; CUDA "
              f"{env['cuda']}; cuDNN {env['cudnn']}")
    return s


def report(env, data_root):
    """The notebooks' header: python and each library's version, the device and the data root, a line each."""
    lines = [f"python {env['python']}"]
    lines += [f"{mod} {env[mod]}" if env.get(mod) else f"{mod} not installed" for mod in LIBRARIES
              if mod != "safetensors"]
    lines.append(f"device {env['device']}")
    lines.append(f"data root {data_root.resolve()}" + ("" if data_root.is_dir() else " (missing)"))
    return "\n".join(lines)
