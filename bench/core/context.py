"""What a metric may use besides the batch: the model, the method, a chunked forward and counters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError, check_choice, check_int

log = logging.getLogger("bench")

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """Turn ``cpu | cuda | cuda:N | mps`` into a device this machine has, or raise a ConfigError
    naming the devices it does have."""
    have = ["cpu"]
    if torch.cuda.is_available():
        have += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        have.append("mps")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={name} is not valid; accepted: cpu, cuda, cuda:N, mps.") from err
    if str(device) not in have:
        raise ConfigError(
            f"device={name} is not available on this machine; accepted here: {', '.join(have)}."
        )
    return device


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure: CUDA's OOM, Python's MemoryError, or the
    RuntimeError of PyTorch's CPU allocator ("can't allocate memory")."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def chunks(n: int, size: int | None) -> Iterator[slice]:
    """Slices covering ``range(n)`` in pieces of at most ``size`` (all of it when ``size`` is None)."""
    size = n if not size else int(size)
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + size))


#: Every out-of-memory retry of this process, in order; a run records the ones of its job.
OUT_OF_MEMORY: list[dict] = []


def note_out_of_memory(where: str, size: int, new: int, err: BaseException, device: object) -> None:
    """Log and keep one halving of a chunk that ran out of memory (``OUT_OF_MEMORY``)."""
    OUT_OF_MEMORY.append(
        {"where": where, "chunk_size": size, "retried_with": new, "error": type(err).__name__}
    )
    log.warning(
        "out of memory in %s at chunk size %d (%s); retrying with %d",
        where,
        size,
        type(err).__name__,
        new,
    )
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def for_pairs(
    items: int,
    per_item: int,
    size: int | None,
    device: torch.device | str,
    body: Callable[[slice, Tensor, Tensor], None],
    where: str = "method",
) -> int | None:
    """Call ``body(pairs, item, sample)`` on the ``items x per_item`` (item, sample) pairs,
    item-major, in chunks of at most ``size`` (None: all at once); returns ``size``, or the
    smaller size it fell back to after running out of memory.

    ``pairs`` is the slice of flat pair indices, ``item`` and ``sample`` long ``[k]`` tensors on
    ``device`` with each pair's item and sample index. The one loop behind every method that
    sends many perturbed copies of every image of a batch through the model (noise tunnels,
    RISE, Score-CAM, Ablation-CAM): one chunk bounds the memory, whatever the batch size. A chunk
    that runs out of memory is retried at half the size (``body`` must change nothing before its
    forward passes succeed), and the smaller size is used for the rest of the call.
    """
    n = items * per_item
    given, size = size, max(1, n if not size else int(size))
    start = 0
    while start < n:
        stop = min(n, start + size)
        j = torch.arange(start, stop, device=device)
        try:
            body(slice(start, stop), j // per_item, j % per_item)
        except (MemoryError, RuntimeError) as err:  # torch.cuda.OutOfMemoryError included
            if stop - start == 1 or not is_out_of_memory(err):
                raise
            size = max(1, (stop - start) // 2)
            note_out_of_memory(where, stop - start, size, err, device)
            given = size
            continue
        start = stop
    return given


@dataclass
class Context:
    """Run-wide services handed to metrics.

    Attributes:
        model: the classifier in eval mode, on ``device``.
        device: where every tensor of the hot path lives.
        chunk_size: most images sent through the model in one forward pass (the memory bound).
        precision: ``fp32 | bf16 | fp16`` autocast for metric forward passes.
        method: the attribution method of the run (sanity checks re-run it), or None.
        seed: the run seed; metrics derive their ``torch.Generator`` from it.
        forward_images: images sent through :meth:`forward` so far (the cost counter).
    """

    model: nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    chunk_size: int = 256
    precision: str = "fp32"
    method: Callable[..., Tensor] | None = None
    seed: int = 0
    forward_images: int = 0
    forward_seconds: float = 0.0
    retries: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        self.chunk_size = check_int("chunk_size", self.chunk_size, minimum=1)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator on the run's device, seeded by ``seed + offset``."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed + offset)
        return gen

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.precision == "fp32":
            yield
        else:
            with torch.autocast(self.device.type, dtype=PRECISIONS[self.precision]):
                yield

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[N, C]`` (float32) of ``images`` ``[N, 3, H, W]``, in chunks of ``chunk_size``.

        A chunk that runs out of memory (CUDA OOM, or a failed allocation on the CPU) is retried
        at half the size, and ``chunk_size`` stays halved for the rest of the run; each halving is
        logged and kept in ``retries`` (the run record's ``forward.out_of_memory``). The logits of
        an image do not depend on the chunk it is in (eval mode), so the scores are unchanged.
        """
        start = time.perf_counter()
        outs = []
        n = images.shape[0]
        with self._autocast():
            i = 0
            while i < n:
                size = self.chunk_size
                try:
                    outs.append(self.model(images[i : i + size]).float())
                except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
                    if size == 1 or not is_out_of_memory(err):
                        raise
                    self._halve(size, err)
                    continue
                i += size
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        self.forward_images += images.shape[0]
        return torch.cat(outs) if outs else images.new_zeros((0, 0))

    def _halve(self, size: int, err: BaseException) -> None:
        self.chunk_size = max(1, size // 2)
        note_out_of_memory("metric forward (chunk_size)", size, self.chunk_size, err, self.device)
        self.retries.append(OUT_OF_MEMORY[-1])

    @torch.no_grad()
    def predictions(self, images: Tensor) -> Tensor:
        """Top-1 classes ``[N]`` (long) of ``images``."""
        return self.forward(images).argmax(dim=1)

    @torch.no_grad()
    def map_forward(
        self, n: int, make: Callable[[slice], Tensor], reduce: Callable[[slice, Tensor], Tensor]
    ) -> Tensor:
        """Build ``n`` perturbed inputs chunk by chunk, forward them, and reduce each chunk's logits.

        ``make(sl)`` returns the images ``[len(sl), 3, H, W]`` of items ``sl``; ``reduce(sl, logits)``
        turns their logits into ``[len(sl)]`` or ``[len(sl), k]`` values per item, concatenated
        along the first dimension. Peak memory is one chunk of images.
        """
        outs = [reduce(sl, self.forward(make(sl))) for sl in chunks(n, self.chunk_size)]
        return torch.cat(outs)
