"""Which machine a figure comes from: a name derived from the hardware, never typed by anyone.

asv compares results only within one machine name, ``bpbench report`` keeps one column per
machine and :func:`bpbench.fastest` caches per machine: so the name must change when the
hardware that decides the timings does. It is built from what the OS reports:

- the CPU model (``model name`` in ``/proc/cpuinfo``; ``platform.processor()`` elsewhere), with
  the x86 family and model numbers, since a virtual machine may report only "AMD EPYC" for
  several generations;
- the number of logical CPUs (``os.cpu_count()``);
- the GPU models, when there are any (``/proc/driver/nvidia/gpus/*/information``, else
  ``nvidia-smi``): a CUDA timing depends on the card.

Example: ``amd-epyc-f25m17-2cpu``; with a GPU,
``intel-xeon-platinum-8480-f6m143-16cpu-nvidia-h200``.
The host name is deliberately left out: every machine of a CI class has the same one.

``bpbench machine --register`` prints the name and registers it with asv
(``~/.asv-machine.json``, what ``asv machine --yes`` would write, under this name);
``bpbench asv ...`` does so and passes ``--machine <name>`` to asv, so results land under this
name automatically.
"""

from __future__ import annotations

import functools
import glob
import os
import platform
import re
import shutil
import subprocess

#: the longest machine name (asv uses it as a folder name)
MAX_NAME = 80


def _cpuinfo():
    """The first processor's fields of /proc/cpuinfo, {} where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _gpus():
    """GPU model names, one per card ([] without an NVIDIA GPU)."""
    names = []
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("Model:"):
                        names.append(line.partition(":")[2].strip())
        except OSError:
            continue
    if names or shutil.which("nvidia-smi") is None:
        return names
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return names
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _mem_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def slug(text):
    """Lower case, runs of anything but letters and digits as one '-': a folder-safe word."""
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    text = re.sub(r"\b(cpu|processor|\d+-core)\b", " ", text)
    text = re.sub(r"@.*", "", text)  # "@ 2.10GHz": a frequency label, not a model
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def name_from(info):
    """The machine name for an :func:`info` dict (pure: testable with any hardware)."""
    parts = [slug(info["cpu"]) or "unknown-cpu"]
    if info.get("cpu_family") is not None and info.get("cpu_model") is not None:
        parts.append(f"f{info['cpu_family']}m{info['cpu_model']}")
    parts.append(f"{info['num_cpu']}cpu")
    gpus = info.get("gpus") or []
    for gpu in dict.fromkeys(gpus):  # one entry per model, with a count when there are several
        count = gpus.count(gpu)
        parts.append((f"{count}x-" if count > 1 else "") + slug(gpu))
    return "-".join(parts)[:MAX_NAME].strip("-")


@functools.lru_cache(maxsize=1)
def _info():
    cpu = _cpuinfo()
    model = cpu.get("model name") or platform.processor() or platform.machine() or "unknown"
    family = cpu.get("cpu family")
    number = cpu.get("model")
    info = {
        "cpu": model,
        "cpu_family": int(family) if family and family.isdigit() else None,
        "cpu_model": int(number) if number and number.isdigit() else None,
        "num_cpu": os.cpu_count() or 1,
        "gpus": _gpus(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "ram": _mem_bytes(),
    }
    info["machine"] = name_from(info)
    return info


def info():
    """What this machine is, as the OS reports it (a new dict; looked up once per process).

    Keys: machine (the name), cpu, cpu_family, cpu_model, num_cpu, gpus (list), arch, os, ram.
    """
    data = dict(_info())
    data["gpus"] = list(data["gpus"])
    return data


def name():
    """This machine's name (see the module docstring)."""
    return _info()["machine"]


def asv_record():
    """This machine as asv's machine record (the fields ``asv machine`` asks for)."""
    data = info()
    gpu = ", ".join(data["gpus"]) or "none"
    return {"machine": data["machine"], "os": data["os"], "arch": data["arch"],
            "cpu": f"{data['cpu']} (family {data['cpu_family']}, model {data['cpu_model']}; "
                   f"GPU: {gpu})",
            "num_cpu": str(data["num_cpu"]), "ram": str(data["ram"] or "")}


def register(path=None):
    """Record this machine in asv's machine file under :func:`name`; returns the name.

    What ``asv machine --yes`` writes (``~/.asv-machine.json``), with the name above instead
    of the host name and every field filled; written through asv's own ``MachineCollection``.
    ``path``: another machine file (tests).
    """
    from asv.machine import MachineCollection

    record = asv_record()
    MachineCollection.save(record["machine"], record, _path=path)
    return record["machine"]


def cache_dir():
    """Where per-machine measurements are cached (fastest's answers, roofline ceilings).

    ``$BPBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/bpbench``, else ``~/.cache/bpbench``
    (not created until something is written). Entries inside are keyed by :func:`name`.
    """
    explicit = os.environ.get("BPBENCH_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bpbench")


# ---------------------------------------------------------------------------- command line
def add_arguments(parser):
    """Options of ``bpbench machine``."""
    parser.add_argument("--register", action="store_true",
                        help="also record it as asv's machine (what `asv machine --yes` does, "
                             "under this name)")


def run(args):
    """``bpbench machine``: print the name and what it was derived from."""
    data = info()
    if args.register:
        register()
        print(f"registered asv machine {data['machine']!r} (~/.asv-machine.json)")
    print(data["machine"])
    for key in ("cpu", "cpu_family", "cpu_model", "num_cpu", "gpus", "arch", "os", "ram"):
        print(f"  {key}: {data[key]}")
    return 0
