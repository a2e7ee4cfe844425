"""Counter-based random numbers on the device: pure functions of (seed, key, counter).

Every seeded method and metric draws from here, so an image's noise depends only on the run seed
and the image (its content or its id), never on the batch it is in, the chunk size or the device.

One hash routine (:func:`_finalise`, the xorshift-multiply finaliser of SplitMix64) with two
constant sets, each pinned by committed results: :func:`mix` keys the seeded methods (random
maps, SmoothGrad/VarGrad/GradientSHAP noise, the LIME/SHAP per-image seeds) and
:func:`splitmix64` (the reference SplitMix64 finaliser) keys ROAD's noise. Replacing either by the
other would change every score that depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from zlib import crc32

import torch
from torch import Tensor

_MASK63 = (1 << 63) - 1
# SplitMix64's constants as signed int64 (torch integer arithmetic wraps around).
_GOLDEN = -7046029254386353131  # 0x9e3779b97f4a7c15
_M1 = -4658895280553007687  # 0xbf58476d1ce4e5b9
_M2 = -7723592293110705685  # 0x94d049bb133111eb


def _sra(x: Tensor, k: int) -> Tensor:
    """Arithmetic right shift of int64 ``x`` by ``k`` bits (torch's ``>>``)."""
    return x >> k


def _srl(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 ``x`` by ``k`` bits."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _finalise(
    x: Tensor,
    rounds: Sequence[tuple[int, int]],
    last: int,
    shift: Callable[[Tensor, int], Tensor],
) -> Tensor:
    """``x = (x ^ shift(x, s)) * m`` for each round, then ``x ^ shift(x, last)`` (wrapping int64)."""
    for s, m in rounds:
        x = (x ^ shift(x, s)) * m
    return x ^ shift(x, last)


def splitmix64(x: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 tensors: a bijective, well-mixing hash."""
    return _finalise(x, ((30, _M1), (27, _M2)), 31, _srl)


def mix(x: Tensor) -> Tensor:
    """A SplitMix64-style hash of int64 ``x`` (its own constants, arithmetic shifts), in ``[0, 2^63)``."""
    rounds = ((31, 0x2545F4914F6CDD1D), (29, 0x27BB2EE687B0B0FD))
    return _finalise(x * 0x5DEECE66D + 0xB, rounds, 32, _sra) & _MASK63


def box_muller(u1: Tensor, u2: Tensor) -> Tensor:
    """Standard normal numbers from two uniforms in (0, 1) (the cosine branch of Box-Muller)."""
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)


# ------------------------------------------------------------------- keyed by image content


def content_keys(images: Tensor, seed: int) -> Tensor:
    """One int64 key per image ``[B]`` from ``(seed, image content)``, computed on the device.

    Per-image randomness derived from it is the same whatever batch the image is in, which is what
    makes a batch of N images give the same maps as N single calls.
    """
    q = (images.detach().flatten(1).double() * 4096).round().long()  # content, quantised
    coef = mix(torch.arange(q.shape[1], device=q.device, dtype=torch.long) + 7919)
    return mix((q * coef).sum(1) + int(seed))  # int64 sums wrap


def hash_uniform(keys: Tensor, index: Tensor) -> Tensor:
    """Counter-based uniform numbers in [0, 1) for int64 ``keys`` and ``index`` (broadcast together)."""
    bits = mix(keys ^ mix(index + 0x9E3779B9))
    return (bits >> 11).double().div_(float(1 << 52)).float()


def hash_normal(keys: Tensor, index: Tensor) -> Tensor:
    """Counter-based standard normal numbers (Box-Muller over two hashed uniforms), broadcast."""
    u1 = hash_uniform(keys, 2 * index).clamp_min(1e-12)
    u2 = hash_uniform(keys, 2 * index + 1)
    return box_muller(u1, u2)


def keyed_normal(keys: Tensor, sample: Tensor, numel: int) -> Tensor:
    """Standard normal noise ``[N, numel]`` for rows with per-image ``keys`` ``[N]`` and sample indices ``[N]``."""
    pix = torch.arange(numel, device=keys.device)
    return hash_normal(mix(keys ^ mix(sample))[:, None], pix[None])


def per_image_seeds(images: Tensor, seed: int) -> list[int]:
    """A 32-bit seed per image from ``(seed, image content)`` for host libraries (lime, shap, captum's
    global RNG): independent of the batch. One host transfer for the batch."""
    return [int(k) % (2**32 - 1) for k in content_keys(images, seed).tolist()]


# ------------------------------------------------------------------- keyed by image id


def id_keys(ids: Sequence[str], device: torch.device | str) -> Tensor:
    """A stable int64 key ``[B]`` per image id (CRC-32), to seed per-image noise."""
    return torch.tensor([crc32(str(i).encode()) for i in ids], dtype=torch.long, device=device)


def _stream_states(seed: int, keys: Tensor, stream: Tensor) -> Tensor:
    """The generator's state ``[n]`` of each ``(seed, keys[i], stream[i])``."""
    state = splitmix64(keys * _GOLDEN + splitmix64(torch.full_like(keys, seed)))
    return splitmix64(state + (stream + 1) * _GOLDEN)


def _normal(state: Tensor, j: Tensor, size: int) -> Tensor:
    """Box-Muller on the hashed counters ``j + 1`` and ``size + j + 1`` of ``state`` (broadcast)."""
    # 24 random bits -> (0, 1)
    u1 = (_srl(splitmix64(state + (j + 1) * _GOLDEN), 40).float() + 0.5) * 2.0**-24
    u2 = (_srl(splitmix64(state + (j + 1 + size) * _GOLDEN), 40).float() + 0.5) * 2.0**-24
    return box_muller(u1, u2)


def counter_normal(seed: int, keys: Tensor, stream: Tensor, size: int) -> Tensor:
    """Standard normal noise ``[n, size]`` that is a pure function of ``(seed, keys[i], stream[i], j)``.

    A counter-based generator (SplitMix64 hash + Box-Muller), so the noise an image receives does
    not depend on the batch it is in, the chunk size or the device.
    """
    j = torch.arange(size, device=keys.device, dtype=torch.long)
    return _normal(_stream_states(seed, keys, stream)[:, None], j[None], size)


def counter_normal_at(
    seed: int, keys: Tensor, stream: Tensor, size: int, rows: Tensor, cols: Tensor
) -> Tensor:
    """``counter_normal(seed, keys, stream, size)[rows, cols]`` without drawing the other entries."""
    return _normal(_stream_states(seed, keys, stream)[rows], cols, size)


def keyed_uniform(keys: Tensor, sample: Tensor, numel: int) -> Tensor:
    """Uniform noise in [0, 1) ``[N, numel]`` for rows with per-image ``keys`` ``[N]`` and sample
    indices ``[N]`` (the uniform counterpart of :func:`keyed_normal`)."""
    pix = torch.arange(numel, device=keys.device)
    return hash_uniform(mix(keys ^ mix(sample))[:, None], pix[None])


def sample_rows(keys: Tensor, rows: int, done: int) -> tuple[Tensor, Tensor]:
    """Per-row ``(keys, sample index)`` of a block of ``rows`` perturbed inputs laid out as captum
    lays them out (``repeat_interleave``: each of the ``len(keys)`` images ``rows // len(keys)``
    times in a row), the block's samples numbered from ``done``."""
    per = rows // max(1, keys.shape[0])
    sample = done + torch.arange(per, device=keys.device).repeat(keys.shape[0])
    return keys.repeat_interleave(per), sample
