"""CHGNet (universal ML potential) behind rlcsp's calculator and relaxer interfaces.

Loading the model takes seconds, so it is loaded once per process and device and shared by every
calculator made afterwards. The weights ship inside the chgnet wheel; nothing is downloaded.
"""
from __future__ import annotations

from functools import lru_cache

from rlcsp.calculators.relax import DEFAULT_STAGES, AseRelaxer, Stage

_LOADS = {"count": 0}


@lru_cache(maxsize=None)
def load_model(device: str = "cpu", version: str | None = None):
    """The pretrained CHGNet model on a device, loaded once per (device, version) per process."""
    from chgnet.model import CHGNet

    _LOADS["count"] += 1
    return CHGNet.load(model_name=version or "0.3.0", use_device=device, verbose=False)


def model_loads() -> int:
    """How many times this process has loaded CHGNet weights (tests check it stays at one)."""
    return _LOADS["count"]


def chgnet_calculator(device: str = "cpu", threads: int | None = None, version: str | None = None,
                      stress_weight: float | None = None):
    """An ASE calculator on the shared model. ``threads`` caps torch's CPU threads (1 for parallel walkers)."""
    import torch
    from chgnet.model.dynamics import CHGNetCalculator

    if device.startswith("cuda") and not torch.cuda.is_available():
        from rlcsp.exceptions import ConfigError

        raise ConfigError(f"device {device!r} requested but torch sees no CUDA device; use device='cpu'")
    if threads is not None:
        torch.set_num_threads(threads)
    kwargs = {} if stress_weight is None else {"stress_weight": stress_weight}
    return CHGNetCalculator(model=load_model(device, version), use_device=device, **kwargs)


def chgnet_relaxer(device: str = "cpu", threads: int | None = None, version: str | None = None,
                   stages: tuple[Stage, ...] = DEFAULT_STAGES[:1] + (Stage("FIRE", fmax=0.05, steps=1000),),
                   timeout_s: float = 600.0) -> AseRelaxer:
    """CHGNet relaxations with FIRE on a FrechetCellFilter (CHGNet's own recipe), to fmax 0.05 eV/A."""
    return AseRelaxer(chgnet_calculator(device, threads, version), stages=stages, timeout_s=timeout_s)
