"""Models: loaders for the embedded CNNs, torchvision, timm and a user's own module.

Every loader returns the model in eval mode with its :class:`ModelMeta` attached as
``model.bench_meta`` (CAM layer, input size, normalisation, class count, weights' origin):
``meta`` holds that contract, ``embedded`` / ``torchvision`` / ``timm`` / ``custom`` one loader each.
"""

from bench.models.custom import load_module
from bench.models.embedded import ShapesCNN, load_shapes_cnn
from bench.models.meta import ModelMeta, attach_meta, meta_of
from bench.models.timm import load_timm
from bench.models.torchvision import load_torchvision, torchvision_weights_file

#: The model loaders a config's ``model._target_`` may name (bench/trust.py).
LOADERS = (load_shapes_cnn, load_torchvision, load_timm, load_module)

__all__ = [
    "LOADERS",
    "ModelMeta",
    "ShapesCNN",
    "attach_meta",
    "load_module",
    "load_shapes_cnn",
    "load_timm",
    "load_torchvision",
    "meta_of",
    "torchvision_weights_file",
]
