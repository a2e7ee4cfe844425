"""What a metric may use besides the batch: the model, the method, a chunked forward and counters."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError, check_choice, check_int
from bench.core.profiling import PassCounter, Stopwatch

log = logging.getLogger("bench")

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: What turns a model's logits ``[N, C]`` into class probabilities, as its config declares
#: (``model.probabilities``): ``softmax`` over the classes (one label per image) or a ``sigmoid``
#: per class (multi-label heads).
PROBABILITIES = {
    "softmax": lambda logits: logits.softmax(-1),
    "sigmoid": lambda logits: logits.sigmoid(),
}


def probabilities_of(model: nn.Module) -> str:
    """The model's declared probabilities (``bench_meta.probabilities``; ``softmax`` for a model
    without metadata)."""
    return getattr(getattr(model, "bench_meta", None), "probabilities", "softmax")


def class_probabilities(logits: Tensor, kind: str = "softmax") -> Tensor:
    """Class probabilities ``[N, C]`` (float32) of ``logits`` ``[N, C]`` under ``kind``, one of
    :data:`PROBABILITIES`."""
    return PROBABILITIES[kind](logits.float())


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


#: ``chunk_size=auto``: the largest chunk it may choose, per device type (a CPU gains nothing from
#: larger chunks; a GPU needs them to be fed).
AUTO_CAP = {"cpu": 64, "cuda": 1024, "mps": 256}
AUTO = "auto"


def auto_chunk(device: torch.device | str) -> int:
    """The most images per forward an ``auto`` batch knob of a method uses on ``device``: the same
    per-device cap as ``chunk_size=auto`` (without its memory estimate; chunks are halved on
    out-of-memory wherever they run)."""
    return AUTO_CAP.get(torch.device(device).type, 256)


def memory_bytes(value: object, key: str = "max_memory") -> int | None:
    """``auto``/None -> None; a number (GiB) or a string such as ``8GiB``, ``512MB``, ``2G`` -> bytes;
    anything else raises a ConfigError naming the value and what is accepted."""
    if value is None or value == AUTO:
        return None
    units = {"": 2**30, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            number, unit = float(value), ""
        else:
            text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
            unit = text[-1] if text and text[-1] in units else ""
            number = float(text[: len(text) - len(unit)])
        if not math.isfinite(number) or number <= 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{key}={value!r} is not valid; accepted: auto, a number of GiB (e.g. 4), or a size "
            "such as 512MiB, 8GiB, 2GB."
        ) from None
    return int(number * units[unit])


def available_memory(device: torch.device) -> int:
    """Bytes free for tensors: CUDA's free device memory; on a CPU ``MemAvailable`` (Linux) or,
    where that is unknown, 4 GiB."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in open("/proc/meminfo").read().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 4 * 2**30


def per_image_bytes(model: nn.Module, image: Tensor) -> int:
    """An upper estimate of the memory one image needs in an inference forward of ``model``:
    twice the largest (input + output) of any leaf module (a residual branch keeps one more
    tensor alive) plus two copies of the image (the perturbed chunk and its source), from one
    forward of ``image`` ``[1, 3, H, W]`` with hooks on the leaf modules."""
    largest = 0

    def size(v: object) -> int:
        if isinstance(v, Tensor):
            return v.numel() * v.element_size()
        if isinstance(v, (tuple, list)):
            return sum(size(t) for t in v)
        return 0

    def hook(_m: nn.Module, args: tuple, out: object) -> None:
        nonlocal largest
        largest = max(largest, size(args) + size(out))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for h in handles:
            h.remove()
    return 2 * largest + 2 * size(image)


#: ``compile``: false, true (= inductor) or one of these torch.compile backends (the debugging ones
#: check the capture without code generation).
COMPILE_BACKENDS = ("inductor", "cudagraphs", "aot_eager", "eager")


def check_compile(value: object) -> bool | str:
    """``false`` / ``true`` / a backend of ``COMPILE_BACKENDS``, else a ConfigError."""
    if isinstance(value, bool):
        return value
    if value in COMPILE_BACKENDS:
        return str(value)
    raise ConfigError(
        f"compile={value!r} is not valid; accepted: false, true (inductor), or a torch.compile "
        f"backend: {', '.join(COMPILE_BACKENDS)}."
    )


def check_chunk_size(value: object) -> int | str:
    """``auto`` or an integer >= 1, else a ConfigError naming the value and what is accepted."""
    if value == AUTO:
        return AUTO
    try:
        return check_int("chunk_size", value, minimum=1)
    except ConfigError:
        raise ConfigError(
            f"chunk_size={value!r} is not valid; accepted: auto or an integer >= 1."
        ) from None


@dataclass
class Context:
    """Run-wide services handed to metrics.

    Attributes:
        model: the classifier in eval mode, on ``device``.
        device: where every tensor of the hot path lives.
        chunk_size: most images sent through the model in one forward pass (the memory bound), or
            ``auto``: chosen at the first batch by :meth:`plan_chunk` (an estimate of the memory
            per image within ``max_memory``, capped by ``AUTO_CAP``, then a probe forward at that
            size, halved on out-of-memory).
        precision: ``fp32 | bf16 | fp16`` autocast for metric forward passes.
        method: the attribution method of the run (sanity checks re-run it), or None.
        seed: the run seed; metrics derive their ``torch.Generator`` from it.
        channels_last: metric forwards take channels-last inputs (the model's weights should be
            channels-last too: the runner converts them).
        compile: metric forwards go through ``torch.compile`` of the model's ``forward``
            (``True`` = the inductor backend, or a backend's name).
        max_memory: the memory ``chunk_size=auto`` may plan for (bytes; None = half of the GPU's
            free memory, a quarter of the CPU's available memory).
        probabilities: what turns the model's logits into class probabilities, one of
            :data:`PROBABILITIES`; None = what the model declares (:func:`probabilities_of`).
        forward_images: images sent through :meth:`forward` so far (the cost counter).
        counter: counts every pass through the model (hooks); the compiled forward bypasses the
            hooks, so :meth:`forward` counts its images there itself.
    """

    model: nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    chunk_size: int | str = 256
    precision: str = "fp32"
    method: Callable[..., Tensor] | None = None
    seed: int = 0
    channels_last: bool = False
    compile: bool | str = False
    max_memory: int | None = None
    probabilities: str | None = None
    forward_images: int = 0
    retries: list[dict] = field(default_factory=list)
    counter: PassCounter | None = None
    watch: Stopwatch | None = None
    chunk_plan: dict[str, Any] = field(default_factory=dict)
    _compiled: Callable[[Tensor], Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        self.probabilities = check_choice(
            "model.probabilities", self.probabilities or probabilities_of(self.model), PROBABILITIES
        )
        self.chunk_size = check_chunk_size(self.chunk_size)
        self.compile = check_compile(self.compile)
        if self.watch is None:
            self.watch = Stopwatch(self.device)

    @property
    def forward_seconds(self) -> float:
        """Seconds spent in :meth:`forward` (CUDA events on a GPU: reading it synchronises once)."""
        return self.watch.seconds().get("forward", 0.0)

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

    def _call(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.compile:
            return self.model(x)
        if self._compiled is None:
            backend = "inductor" if self.compile is True else self.compile
            self._compiled = torch.compile(self.model.forward, backend=backend)
        out = self._compiled(x)
        if self.counter is not None and not self.counter.paused:
            self.counter.forward += x.shape[0]
        return out

    def plan_chunk(self, images: Tensor) -> int:
        """Resolve ``chunk_size=auto`` from one image of ``images`` (nothing to do for a number);
        returns the chunk size. The plan (setting, estimate, budget, cap, chosen size, halvings)
        is kept in ``chunk_plan`` for the run record."""
        if self.chunk_size != AUTO:
            self.chunk_plan = self.chunk_plan or {"setting": self.chunk_size}
            return int(self.chunk_size)
        one = images[:1]
        paused = self.counter is not None
        if paused:
            self.counter.paused += 1
        try:
            need = per_image_bytes(self.model, one)
            budget = self.max_memory or available_memory(self.device) // (
                2 if self.device.type == "cuda" else 4
            )
            cap = AUTO_CAP.get(self.device.type, 256)
            size = max(1, min(cap, budget // max(1, need)))
            halvings = 0
            while True:  # the probe: one forward at the planned size, halved until it fits
                try:
                    with torch.no_grad(), self._autocast():
                        self._call(one.expand(size, *one.shape[1:]).contiguous())
                    break
                except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
                    if size == 1 or not is_out_of_memory(err):
                        raise
                    note_out_of_memory("chunk_size=auto probe", size, size // 2, err, self.device)
                    self.retries.append(OUT_OF_MEMORY[-1])
                    size, halvings = size // 2, halvings + 1
        finally:
            if paused:
                self.counter.paused -= 1
        self.chunk_size = int(size)
        self.chunk_plan = {
            "setting": AUTO,
            "chosen": self.chunk_size,
            "estimate_mib_per_image": round(need / 2**20, 3),
            "budget_mib": round(budget / 2**20, 1),
            "cap": cap,
            "probe_halvings": halvings,
        }
        log.info(
            "chunk_size=auto: %d images per forward (%.2f MiB per image estimated, budget %.0f MiB, "
            "cap %d)",
            self.chunk_size,
            need / 2**20,
            budget / 2**20,
            cap,
        )
        return self.chunk_size

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[N, C]`` (float32) of ``images`` ``[N, 3, H, W]``, in chunks of ``chunk_size``.

        A chunk that runs out of memory (CUDA OOM, or a failed allocation on the CPU) is retried
        at half the size, and ``chunk_size`` stays halved for the rest of the run; each halving is
        logged and kept in ``retries`` (the run record's ``forward.out_of_memory``). The logits of
        an image depend on the chunk it is in (eval mode) only through rounding (the kernels
        order their sums by the batch size: a few float32 ulps), so the scores are unchanged to
        ~1e-7.
        Nothing here synchronises the device (the time is measured with events on CUDA).
        """
        if self.chunk_size == AUTO:
            self.plan_chunk(images)
        token = self.watch.start()
        outs = []
        n = images.shape[0]
        with self._autocast():
            i = 0
            while i < n:
                size = self.chunk_size
                try:
                    outs.append(self._call(images[i : i + size]).float())
                except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
                    if size == 1 or not is_out_of_memory(err):
                        raise
                    self._halve(size, err)
                    continue
                i += size
        self.watch.stop("forward", token)
        self.forward_images += images.shape[0]
        return torch.cat(outs) if outs else images.new_zeros((0, 0))

    def _halve(self, size: int, err: BaseException) -> None:
        self.chunk_size = max(1, size // 2)
        note_out_of_memory("metric forward (chunk_size)", size, self.chunk_size, err, self.device)
        self.retries.append(OUT_OF_MEMORY[-1])

    def probs(self, logits: Tensor) -> Tensor:
        """Class probabilities ``[N, C]`` of ``logits`` under the model's :attr:`probabilities`."""
        return class_probabilities(logits, self.probabilities)

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
        along the first dimension. Peak memory is one chunk of images, and whatever ``make``
        needs to build them (ROAD's imputation): a chunk that runs out of memory there too is
        retried at half the size, as in :meth:`forward` (``make`` and ``reduce`` must be pure
        functions of the slice).
        """
        if self.chunk_size == AUTO and n:
            self.plan_chunk(make(slice(0, 1)))
        outs, start = [], 0
        while start < n:
            size = int(self.chunk_size)
            sl = slice(start, min(n, start + size))
            try:
                outs.append(reduce(sl, self.forward(make(sl))))
            except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
                if sl.stop - sl.start == 1 or not is_out_of_memory(err):
                    raise
                self._halve(sl.stop - sl.start, err)
                continue
            start = sl.stop
        return torch.cat(outs)
