"""Which device, precision, quantisation and engine a local scorer runs with: the ``auto`` rules, in one place."""

from __future__ import annotations

import os
import re
import sys

__all__ = ["native_bfloat16", "resolve_backend", "resolve_device", "resolve_dtype", "resolve_quantize"]


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"``: cuda, then mps, then cpu. Anything else is passed through.

    A CPU-only torch build answers "cpu" without importing torch (read from its version file), so
    that a process serving a cached OpenVINO model never loads torch.
    """
    if device not in (None, "auto"):
        return str(device)
    if "torch" not in sys.modules and _cpu_only_torch():
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _cpu_only_torch() -> bool:
    """Whether the installed torch is a CPU-only build (no CUDA, no ROCm; not macOS, which may have MPS)."""
    import importlib.util

    if sys.platform == "darwin":
        return False
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = open(os.path.join(next(iter(spec.submodule_search_locations)), "version.py"), encoding="utf-8").read()
    except OSError:
        return False
    found = dict(re.findall(r"^(cuda|hip)\b[^=]*=\s*(.+?)\s*$", text, flags=re.M))
    return found.get("cuda") == "None" and found.get("hip") == "None"


def resolve_backend(backend: str, device: str) -> str:
    """``auto``: OpenVINO when it is installed and the device is the CPU, torch otherwise.

    ``auto`` falls back to torch at load time for a model the OpenVINO engine does not convert
    (anything but a BERT-family sequence classifier). ``"openvino"`` without the extra installed
    raises an ImportError naming it.
    """
    if backend not in ("auto", "torch", "onnx", "openvino"):
        raise ValueError(f"backend must be 'auto', 'torch', 'onnx' or 'openvino', got {backend!r}")
    on_cpu = device.split(":", 1)[0] == "cpu"
    from . import _openvino

    if backend == "auto":
        return "auto" if on_cpu and _openvino.available() else "torch"
    if backend == "openvino":
        _openvino.require()
        if not on_cpu:
            raise ValueError(
                f"backend='openvino' runs on the CPU (device is {device!r}); use device='cpu' or backend='torch'"
            )
    return backend


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX).

    Asked of torch (which reads the CPU's feature flags), not of a list of known hosts.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # pragma: no cover - a torch build without the probe's backing code
            continue
    return False


def resolve_dtype(dtype: str, device: str, backend: str = "torch") -> str:
    """``auto``: the fastest precision that passed the fidelity gate (benchmarks/fidelity.py).

    float16 on CUDA; bfloat16 on a CPU with native bfloat16 (AVX512-BF16 or AMX): autocast on
    torch, where it ran 1.7-1.8x faster than float32 with NDCG@10 within 0.005 of it, bfloat16
    inference precision on OpenVINO (whose CPU plugin is asked about bfloat16, so torch is not
    imported); exact float32 everywhere else. ``"float32"`` forces exact scores (identical to
    ``CrossEncoder.predict``) on either engine.
    """
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be one of 'auto', 'float32', 'bfloat16', 'float16', got {dtype!r}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return "float16"
        if device.split(":", 1)[0] == "cpu":
            if backend in ("auto", "openvino"):
                from ._openvino import native_bfloat16 as openvino_bfloat16

                if openvino_bfloat16():
                    return "bfloat16"
            elif native_bfloat16():
                return "bfloat16"
        return "float32"
    if dtype == "float16" and not device.startswith("cuda"):
        raise ValueError(f"dtype='float16' needs a CUDA device (device is {device!r}); use dtype='bfloat16' on CPU")
    return dtype


def resolve_quantize(quantize: str, dtype: str, device: str, backend: str) -> str:
    """``auto``: no quantisation. Neither int8 path passed the fidelity gate (benchmarks/README.md): torch
    dynamic int8 moved WikiQA NDCG@10 by -0.052 against float32, OpenVINO static int8 (NNCF) kept NDCG@10
    but not the order (median Kendall tau below 0.98), so neither is picked for you. ``"int8"`` asks for
    it where speed matters more: NNCF static int8 on the OpenVINO engine (``backend="auto"``/``"openvino"``),
    torch dynamic int8 with ``backend="torch"``; CPU, float32 outside the int8 products.
    """
    if quantize not in ("auto", "none", "int8"):
        raise ValueError(f"quantize must be one of 'auto', 'none', 'int8', got {quantize!r}")
    if quantize != "int8":
        return "none"
    if backend not in ("auto", "torch", "openvino") or device.split(":", 1)[0] != "cpu":
        raise ValueError(
            f"quantize='int8' runs on the CPU with the OpenVINO or torch engine (device is {device!r}, "
            f"backend {backend!r}); use device='cpu', backend='openvino' or 'torch', or quantize='none'"
        )
    if dtype not in ("auto", "float32"):
        raise ValueError(
            f"quantize='int8' quantises float32 activations; it does not combine with dtype={dtype!r}: "
            "leave dtype='auto' or set dtype='float32'"
        )
    return "int8"
