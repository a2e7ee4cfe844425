"""Speed of the harness: our metrics and methods against the bare forward passes, against the peers, and scaling.

    python scripts/bench_speed.py --quick --threads 1      # ~5-10 min on 2 CPU cores -> results/perf/cpu.md
    python scripts/bench_speed.py --device cuda            # full mode -> results/perf/<gpu name>.md
    python scripts/bench_speed --quick                     # the same: this package run as a folder

Everything is measured in one run on the same models, images and maps, the tools interleaved
round robin over ``--repeats`` repeats (after one untimed warm-up call each), so ratios hold on a
noisy machine; tables quote the median and the min-max of the wall seconds (timed with
:class:`bench.core.profiling.Stopwatch`).

1. Harness overhead (:mod:`.overhead`). Each metric (its ``conf/metric/*.yaml`` defaults, shrunk by
   ``--quick``) and each perturbation method (``conf/method/*.yaml``) on the embedded CNN (112 px,
   the committed checkpoint) and torchvision ResNet-18 / ResNet-50 with random weights (224 px). A
   forward pre-hook on the model records the shape of every batch the call sends through it (and
   whether gradients were on); the *floor* replays exactly those batches, same count, same chunk
   sizes, through the same model with plain ``model(x)`` (``.sum().backward()`` for the batches
   that ran with gradients). ratio = ours / floor: 1.0 means the harness adds nothing to the
   forwards. On CUDA a second floor runs the same batches under ``torch.autocast(bfloat16)``.
2. Peers, same work, values compared (:mod:`.peers`, a table of builders): Quantus'
   PixelFlipping, PointingGame and MPRT, grad-cam's ROAD, RISE's and saliency-maps-metrics'
   reference loops, the ``lime`` and ``shap`` packages called directly (:mod:`.references`) and
   captum's Occlusion, each configured to the protocol of our metric as the peer-agreement tests
   do; the max |difference| of the values.
3. Scaling (:mod:`.scaling`): deletion on ResNet-18, seconds and peak memory vs images, image size
   and chunk size. Peak memory is the growth of one call (:class:`.measure.PeakGrowth`): the peak
   of :class:`bench.core.profiling.PeakMemory` (reset before the call) minus what was in use
   before it: CUDA's allocated bytes on a GPU; on a CPU the resident set (``VmHWM``, reset through
   ``/proc/self/clear_refs``, minus the resident set before the call, freed heap returned with
   ``malloc_trim`` first), checked against a known allocation.
"""

from .cli import main

__all__ = ["main"]
