"""Whether a torch device can be used here, checked before a command creates anything."""

from __future__ import annotations


def check_device(device: str, *, name: str = "--device") -> str:
    """Return ``device`` if torch can run on it on this machine.

    Raises
    ------
    ValueError
        If ``device`` is not a torch device string, or its kind (cuda, mps, xpu, ...) is not
        available here or has no device of that index; the message names ``name``.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{name} {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, "
                         f"mps): {exc}") from None
    if parsed.type == "cpu":
        return device
    if parsed.type == "mps":
        count = int(torch.backends.mps.is_available())
    else:
        backend = getattr(torch, parsed.type, None)
        available = getattr(backend, "is_available", lambda: False)
        count = backend.device_count() if available() else 0
    if count == 0:
        raise ValueError(f"{name} {device}: no {parsed.type} device is available on this "
                         "machine (torch sees none); use --device cpu.")
    if parsed.index is not None and parsed.index >= count:
        raise ValueError(f"{name} {device}: this machine has {count} {parsed.type} "
                         f"device(s), numbered from 0.")
    return device
