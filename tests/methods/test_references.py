"""Oracles: IG completeness, DeepLIFT summation, agreement with pytorch-grad-cam, noise wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import ROOT
from bench.methods.cam import (
    CAM,
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from bench.methods.gradient import (
    DeepLift,
    Gradient,
    GradientShap,
    IntegratedGradients,
    SmoothGrad,
    VarGrad,
)
from bench.models import load_shapes_cnn
from tests.methods.conftest import make_images, make_method, make_model

CKPT = ROOT / "results" / "reference" / "models" / "shapes_cnn.pt"


@pytest.fixture(scope="module")
def trained():
    """The committed embedded CNN (random init if the checkpoint is missing) and two test images."""
    from bench.data.shapes import ShapesDataset

    model = load_shapes_cnn(str(CKPT)) if CKPT.is_file() else make_model("shapes_cnn")
    data = ShapesDataset("test", size=2)
    images = torch.stack([data[i].image for i in range(2)])
    targets = torch.tensor([data[i].target for i in range(2)])
    return model, images, targets


def _score(model, x, targets):
    with torch.no_grad():
        return model(x).gather(1, targets[:, None])[:, 0]


def test_integrated_gradients_completeness(trained):
    model, images, targets = trained
    ig = IntegratedGradients(n_steps=200, baseline=0.0, internal_batch_size=200, reduction="sum")
    total = ig(model, images, targets).sum(dim=(1, 2))
    expected = _score(model, images, targets) - _score(model, torch.zeros_like(images), targets)
    assert ((total - expected).abs() <= 0.01 * expected.abs()).all(), (total, expected)


def test_deeplift_summation_to_delta(trained):
    model, images, targets = trained
    total = DeepLift(baseline=0.0)(model, images, targets).sum(dim=(1, 2))
    expected = _score(model, images, targets) - _score(model, torch.zeros_like(images), targets)
    # captum's max-pool rule and its gradient fallback where input ~ reference leave ~1 % here
    assert ((total - expected).abs() <= 0.025 * expected.abs()).all(), (total, expected)


def test_smoothgrad_without_noise_is_the_wrapped_method(trained):
    model, images, targets = trained
    plain = Gradient()(model, images, targets)
    smooth = SmoothGrad(Gradient(), n_samples=3, noise_level=0.0, internal_batch_size=4)(
        model, images, targets
    )
    torch.testing.assert_close(smooth, plain)
    var = VarGrad(Gradient(abs=False), n_samples=3, noise_level=0.0)(model, images, targets)
    assert var.abs().max() <= 1e-5 * plain.pow(2).max()  # zero up to float32 rounding


@pytest.mark.slow
def test_gradient_shap_with_a_fixed_baseline_approaches_integrated_gradients(trained):
    model, images, targets = trained
    shap = GradientShap(n_samples=400, baseline_std=0.0, internal_batch_size=400)(
        model, images, targets
    )
    ig = IntegratedGradients(n_steps=100)(model, images, targets)
    corr = np.corrcoef(shap.flatten().numpy(), ig.flatten().numpy())[0, 1]
    assert corr > 0.9, corr


@pytest.mark.parametrize(
    "method",
    [
        "smoothgrad",
        "vargrad",
        "gradient_shap",
        "rise",
        "lime",
        "captum_lime",
        "kernel_shap",
        "captum_kernel_shap",
    ],
)
def test_seeded_methods_are_deterministic_and_depend_on_the_seed(method, trained):
    model, images, targets = trained
    images, targets = images[:1], targets[:1]
    maps = []
    for seed in (3, 3, 4):
        m = make_method(method, "shapes_cnn", overrides=[f"seed={seed}"])
        if hasattr(m, "n_samples"):
            m.n_samples = 32  # enough samples for the surrogates to be non-zero
        maps.append(m(model, images, targets))
    a, b, c = maps
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_rise_draws_its_masks_once(trained):
    model, images, targets = trained
    rise = make_method("rise", "shapes_cnn")
    rise(model, images[:1], targets[:1])
    masks = rise.masks(*images.shape[-2:], images.device)
    rise(model, images[1:], targets[1:])
    assert rise.masks(*images.shape[-2:], images.device) is masks
    assert masks.shape == (rise.n_masks, *images.shape[-2:])
    assert 0 <= masks.min() and masks.max() <= 1


# ---------------------------------------------------------------------------------------------
# Agreement with the grad-cam package (pytorch_grad_cam) on the same model, layer and input.


def _norm(m: np.ndarray) -> np.ndarray:
    m = m - m.min(axis=(-2, -1), keepdims=True)
    return m / (m.max(axis=(-2, -1), keepdims=True) + 1e-12)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(min(np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(_norm(a), _norm(b))))


def _package(cls, model, layer, images, targets, **kw):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was = model.training
    with cls(model=model, target_layers=[layer], **kw) as cam:
        out = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    model.train(was)
    return out


PAIRS = {
    "gradcam": (GradCAM, "GradCAM"),
    "cam": (lambda layer: CAM(layer, relu=True), "GradCAM"),  # CAM = Grad-CAM x hw on GAP + linear
    "gradcam_pp": (GradCAMPlusPlus, "GradCAMPlusPlus"),
    "xgradcam": (XGradCAM, "XGradCAM"),
    "layercam": (LayerCAM, "LayerCAM"),
    "scorecam": (ScoreCAM, "ScoreCAM"),
    "ablationcam": (AblationCAM, "AblationCAM"),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_cam_family_agrees_with_grad_cam_package(name, trained, record_property):
    import pytorch_grad_cam

    model, images, targets = trained
    ours_cls, theirs = PAIRS[name]
    ours = ours_cls("features.3")(model, images, targets).numpy()
    ref = _package(getattr(pytorch_grad_cam, theirs), model, model.features[3], images, targets)
    corr = _corr(ours, ref)
    record_property("correlation", corr)
    print(f"{name}: correlation with pytorch_grad_cam.{theirs} = {corr:.4f}")
    assert corr >= 0.999, corr


@pytest.mark.parametrize("name", ["gradcam", "gradcam_pp", "xgradcam", "layercam"])
def test_cam_family_agrees_on_resnet18(name):
    import pytorch_grad_cam

    model = make_model("resnet18")
    images = make_images("resnet18", n=2, side=128)  # a 4x4 grid at layer4
    with torch.no_grad():
        targets = model(images).argmax(1)
    ours = PAIRS[name][0]("layer4")(model, images, targets).numpy()
    ref = _package(getattr(pytorch_grad_cam, PAIRS[name][1]), model, model.layer4, images, targets)
    corr = _corr(ours, ref)
    print(f"{name} resnet18: correlation = {corr:.4f}")
    assert corr >= 0.999, corr


def test_eigencam_agrees_with_the_package_projection_up_to_sign(trained):
    """The one intended difference: the SVD sign is fixed here (largest magnitude positive), while
    pytorch_grad_cam.EigenCAM keeps LAPACK's arbitrary sign; so compare the projections before the
    ReLU, up to sign, and check the sign rule."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, images, targets = trained
    cam = EigenCAM("features.3", relu=False)
    acts, _ = cam.activations(model.eval(), images, targets)
    ours = cam.attribute(model, images, targets).numpy()
    ref = get_2d_projection(acts.numpy())
    for o, r in zip(ours, ref):
        assert abs(np.corrcoef(o.ravel(), r.ravel())[0, 1]) >= 0.999
        assert abs(o.max()) >= abs(o.min())


def test_guided_gradcam_agrees_with_package(trained):
    from pytorch_grad_cam import GradCAM as PkgGradCAM
    from pytorch_grad_cam import GuidedBackpropReLUModel

    model, images, targets = trained
    ours = GuidedGradCAM("features.3", reduction="max_abs")(model, images, targets).numpy()
    cams = _package(PkgGradCAM, model, model.features[3], images, targets)
    gb = GuidedBackpropReLUModel(model=model, device=torch.device("cpu"))
    refs = []
    for i in range(len(images)):
        g = gb(images[i : i + 1], target_category=int(targets[i]))  # [H, W, 3]
        refs.append(np.abs(g * cams[i][..., None]).max(-1))
    corr = _corr(ours, np.stack(refs))
    print(f"guided_gradcam: correlation = {corr:.4f}")
    assert corr >= 0.999, corr


def test_vit_gradcam_agrees_with_package_reshape_recipe():
    from pytorch_grad_cam import GradCAM as PkgGradCAM

    model = make_model("vit")
    images, targets = make_images("vit", n=2), torch.tensor([0, 3])
    layer = "encoder.layers.encoder_layer_1.ln_1"
    ours = make_method("vit_gradcam", "vit")(model, images, targets).numpy()

    def reshape(t):
        return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    ref = _package(
        PkgGradCAM, model, model.get_submodule(layer), images, targets, reshape_transform=reshape
    )
    corr = _corr(ours, ref)
    print(f"vit_gradcam: correlation = {corr:.4f}")
    assert corr >= 0.999, corr
