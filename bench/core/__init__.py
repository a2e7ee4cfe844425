"""The foundation every other part imports: it imports nothing of this project's own.

``errors`` (one-line config errors, the one choice check), ``context`` (device, precision, the
chunked forward and its counters, the pair-chunk loop), ``batch`` (the Sample/Batch contract),
``imaging``, ``rng`` (counter-based random numbers), ``ranking`` (pixel ranks and correlations),
``layers`` (submodules by name), ``paths`` and ``checkpoints``. Methods and metrics import only
this package; datasets and model loaders only this package; the runner imports everything
(``tests/test_layering.py`` enforces it).
"""
