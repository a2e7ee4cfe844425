"""Models: loaders for the embedded CNNs, torchvision, timm, Hugging Face and a user's own module.

Every loader returns the model in eval mode with its :class:`ModelMeta` attached as
``model.bench_meta`` (CAM layer, input size, normalisation, class count, weights' origin, token
layout, probabilities): ``meta`` holds that contract, ``embedded`` / ``torchvision`` / ``timm`` /
``hf`` / ``custom`` one loader each.
"""

from bench.models.custom import load_module
from bench.models.embedded import ShapesCNN, load_shapes_cnn
from bench.models.hf import HFClassifier, hf_preprocessing, load_hf
from bench.models.meta import ModelMeta, attach_meta, meta_of
from bench.models.timm import load_timm, timm_preprocessing
from bench.models.torchvision import load_torchvision, torchvision_weights_file

#: The model loaders a config's ``model._target_`` may name (bench/trust.py).
LOADERS = (load_shapes_cnn, load_torchvision, load_timm, load_hf, load_module)

#: The loaders that read the input size and normalisation from the model itself (``input_size``,
#: ``mean``, ``std`` null in their config), with the function that tells them without building
#: the model (the config's checks construct the metrics before any model is loaded).
PREPROCESSING = {load_timm: timm_preprocessing, load_hf: hf_preprocessing}

__all__ = [
    "LOADERS",
    "PREPROCESSING",
    "HFClassifier",
    "ModelMeta",
    "ShapesCNN",
    "attach_meta",
    "load_hf",
    "load_module",
    "load_shapes_cnn",
    "load_timm",
    "load_torchvision",
    "meta_of",
    "torchvision_weights_file",
]
