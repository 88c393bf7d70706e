"""A stand-in accelerator for machines without one: tensors that say they live on another device.

Mixing a CPU tensor with an accelerator tensor in one op is the bug that broke MeshDream on CUDA while every CPU
test passed. Under `other_device()`, anything moved to `OTHER` (the "meta" device, which has a device guard in
every PyTorch build) becomes an `OnOther` tensor: it computes on the CPU, reports device "meta", and any op
that mixes it with a non-scalar CPU tensor raises PyTorch's own "Expected all tensors to be on the same device"
error, with the same exceptions CUDA makes (0-dim CPU tensors act as scalars; index tensors may stay on the
CPU). `.numpy()` fails on it, as on CUDA. So a generator moved to `OTHER` runs every feature end to end with real
numbers, and any missing device transfer fails the test.

PyTorch builds tensors from Python data (`torch.tensor(..., device=)`, list indices) below the dispatch mode, which
would leave real, data-less meta tensors; those entry points are wrapped to build on the CPU and move through the
mode, and any meta tensor that still reaches an op is an error rather than silent garbage.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

OTHER = torch.device("meta")
# Ops whose index tensors may live on the CPU while the indexed tensor lives on the device (as CUDA allows).
_INDEX_OPS = {
    torch.ops.aten.index.Tensor,
    torch.ops.aten.index_put.default,
    torch.ops.aten.index_put_.default,
    torch.ops.aten._index_put_impl_.default,
}


class OnOther(torch.Tensor):
    """A CPU tensor that reports device `OTHER`."""

    @staticmethod
    def __new__(cls, data: torch.Tensor):
        strided = {"strides": data.stride()} if data.layout == torch.strided else {"layout": data.layout}
        return torch.Tensor._make_wrapper_subclass(
            cls, data.shape, dtype=data.dtype, device=OTHER, requires_grad=data.requires_grad, **strided
        )

    def __init__(self, data: torch.Tensor):
        self.data_ = data

    def __repr__(self) -> str:
        return f"OnOther({self.data_!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def _on_other(device) -> bool:
    return device is not None and torch.device(device).type == OTHER.type


def _dispatch(func, args, kwargs):
    flat_all = tree_flatten((args, kwargs))[0]
    if any(type(t) is torch.Tensor and t.device == OTHER and t.numel() for t in flat_all):
        raise RuntimeError(
            f"{func} got a data-less {OTHER} tensor built outside the device double; build it on the CPU"
        )
    checked = (args[0], args[2:], kwargs) if func in _INDEX_OPS else (args, kwargs)
    flat, _ = tree_flatten(checked)
    other = any(isinstance(t, OnOther) for t in flat)
    cpu = [t for t in flat if isinstance(t, torch.Tensor) and not isinstance(t, OnOther) and t.dim() > 0]
    if other and cpu:
        raise RuntimeError(
            f"Expected all tensors to be on the same device, but found at least two devices, {OTHER} and cpu! "
            f"({func}: a CPU tensor of shape {tuple(cpu[0].shape)} met tensors on the generator's device)"
        )
    if any(isinstance(t, OnOther) for t in flat_all):
        other = True

    def unwrap(t):
        return t.data_ if isinstance(t, OnOther) else t

    args, kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
    if "device" in kwargs:  # factories and .to(device=...): where the result goes
        other = _on_other(kwargs["device"])
        kwargs["device"] = torch.device("cpu")
    elif func is torch.ops.aten.to.device:  # .to(device) as it reaches the mode under inference_mode
        other = _on_other(args[1])
        args = (args[0], torch.device("cpu"), *args[2:])
    out = func(*args, **kwargs)
    if not other:
        return out
    return tree_map(lambda t: OnOther(t) if isinstance(t, torch.Tensor) and not isinstance(t, OnOther) else t, out)


class _Mode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def _index(idx):
    """List indices as CPU index tensors (PyTorch would build them on the indexed tensor's device, data-less)."""
    if isinstance(idx, tuple):
        return tuple(_index(i) for i in idx)
    return torch.as_tensor(idx) if isinstance(idx, list) else idx


def _from_data(make):
    def wrapped(data, *args, device=None, **kwargs):
        out = make(data, *args, **kwargs)
        return out.to(device) if device is not None else out

    return wrapped


@contextmanager
def other_device():
    """Run the block with `OTHER` acting as an accelerator (see the module doc)."""
    patches = {
        (torch.Tensor, "__getitem__"): lambda orig: lambda self, idx: orig(self, _index(idx)),
        (torch.Tensor, "__setitem__"): lambda orig: lambda self, idx, value: orig(self, _index(idx), value),
        (torch, "tensor"): _from_data,
        (torch, "as_tensor"): _from_data,
    }
    saved = {key: getattr(*key) for key in patches}
    try:
        for (owner, name), patch in patches.items():
            setattr(owner, name, patch(saved[(owner, name)]))
        with _Mode():
            yield OTHER
    finally:
        for (owner, name), orig in saved.items():
            setattr(owner, name, orig)
