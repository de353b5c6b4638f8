"""Where torch computes: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` turned into a device.

Its own module so that both the trainer and the process-group set-up
(:mod:`mlpkit.train.distributed`) can use it without importing each other.
"""

from __future__ import annotations

import torch

from mlpkit.errors import ConfigError

__all__ = ["DEVICE_NAMES", "resolve_device"]

DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a :class:`torch.device`.

    ``"auto"`` picks the first GPU when CUDA is available, else the CPU.

    Raises
    ------
    ConfigError
        For an unknown name (listing the valid ones), or ``"cuda"`` when this torch build or
        machine has no CUDA device, or a GPU index that does not exist.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index_text = name.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise ConfigError(f"device must be one of {list(DEVICE_NAMES)} or 'cuda:N', got {name!r}")
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a build without CUDA")
            raise ConfigError(
                f"device {name!r} was requested but CUDA is not available ({build}); "
                "use device 'cpu', or 'auto' to take a GPU only when there is one"
            )
        index = int(index_text) if index_text else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    raise ConfigError(f"device must be one of {list(DEVICE_NAMES)} or 'cuda:N', got {name!r}")
