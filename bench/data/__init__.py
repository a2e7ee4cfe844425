"""Datasets: one module per dataset family; each yields :class:`bench.core.batch.Sample` items.

``base`` (the dataset base class), ``synthetic`` (the generated benchmarks' shared parts),
``files`` (image files on disk: loading, resizing, the file-backed base class), ``pairs``
(multi-label (image, class) pairs: class mappings and the "difficult" subset), ``subset``
(which items a job scores), and one module per family: ``shapes``, ``scenes`` (multi-object
shapes: (image, class) pairs with partners), ``digits``, ``folder``, ``imagenet``, ``voc``, ``coco``.
"""
