"""Run megatron-core 0.16.1 on a CPU-only torch build.

megatron-core hard-codes CUDA in a few places that the CPU path reaches: DDP grad buffers are
allocated on ``torch.cuda.current_device()``, the no-pipelining schedule, the FP32 optimizer and the
grad-norm code create tensors with ``device="cuda"``, rotary embeddings ask for the current CUDA
device, and dist_checkpointing calls ``torch.cuda.synchronize()`` and ``Tensor.cuda()``. This shim
sends all of those to the CPU. It is installed only when CUDA is absent, so GPU runs never see it.

Two limits remain on CPU and are handled by the callers, not here: gradient clipping asserts CUDA
tensors (``OptimizerConfig.clip_grad=0.0`` on CPU), and the distributed optimizer checks for CUDA
tensor types (``use_distributed_optimizer=False`` on CPU).
"""

from __future__ import annotations

import threading

import torch
from torch.overrides import TorchFunctionMode

_patched = False
_threads = threading.local()


class _CudaToCpu(TorchFunctionMode):
    """Rewrites ``device="cuda..."`` keyword arguments of torch calls to ``"cpu"`` and makes
    ``Tensor.cuda()`` return the tensor itself."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        device = kwargs.get("device")
        if device is not None and str(device).startswith("cuda"):
            kwargs = {**kwargs, "device": "cpu"}
        return func(*args, **kwargs)


def install() -> None:
    """Install the shim in this process and activate it in the calling thread; a no-op with CUDA.

    Idempotent. The function patches are process-wide; torch keeps function modes per thread, so
    every entry point that may run megatron code on a new thread (a Ray actor method, a probe)
    calls this first.
    """
    global _patched
    if torch.cuda.is_available():
        return
    if not _patched:
        # megatron only passes it on as torch.zeros(..., device=...), where "cpu" is valid.
        torch.cuda.current_device = lambda: "cpu"
        # Nothing to wait for: CPU ops are synchronous.
        torch.cuda.synchronize = lambda *args, **kwargs: None
        _patched = True
    if not getattr(_threads, "active", False):
        # Entered and never exited: the mode stays on for the rest of this thread.
        _CudaToCpu().__enter__()
        _threads.active = True
