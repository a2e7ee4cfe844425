"""Class activation maps: one base class does hooks, forward/backward and pooling; variants weight.

Shape after pytorch-grad-cam's ``BaseCAM``, but batched and kept on the device. Every variant reads
its layer from the model config (``layer: ${model.cam_layer}``), so one method file serves every
model; every variant needs ``feature_maps`` (its check refuses a layer without them), CAM also a
``linear_head``. A model whose loader states its layout (:class:`bench.core.layers.FeatureLayout`:
timm and Hugging Face models) has its layer's output read through it: channels-last maps (Swin)
are permuted and transformer tokens become the patch grid, so no user writes reshape code (as
pytorch-grad-cam's ``reshape_transform``); without a layout a token layer is for ``vit_gradcam``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import ConfigError, check_choice
from bench.core.layers import FeatureLayout, get_layer
from bench.methods.base import Method, check_batch_size, chunked_pairs, need
from bench.methods.layers import (
    NO_LAYER,
    head_input,
    layout_of,
    probe_grid,
    probe_stated,
    stated_layer,
)

#: Where the ReLU of the weighted sum goes: on the layer-resolution map (pytorch-grad-cam, the
#: papers), on the map upsampled to the input (captum's LayerGradCam users), or nowhere.
RELU_RULES = ("before_upsample", "after_upsample", "none")


def relu_rule(relu: str | bool) -> str:
    """A ``relu`` setting as one of :data:`RELU_RULES` (``true`` = ``before_upsample``, ``false`` = ``none``)."""
    if isinstance(relu, bool):
        return "before_upsample" if relu else "none"
    return check_choice("relu", relu, RELU_RULES)


@need("feature_maps", "a layer (the method's layer) whose output is feature maps [B, K, h, w]")
def _feature_maps(method: BaseCAM, model: nn.Module) -> str | None:
    """A layer whose output is feature maps ``[B, K, h, w]``, whatever its type, or that the
    model's stated layout reads as such (channels-last maps, tokens); probed with one zero image
    at the model's input size when its loader states it."""
    layout = layout_of(model)
    if layout is not None:
        return probe_grid(method, model, layout)
    return probe_stated(
        method,
        model,
        4,
        "feature maps [B, K, h, w]",
        "any module with a 4-D output (for vision transformers use method=vit_gradcam on the "
        "token grid).",
    )[0]


def _linear_head_of(method: CAM, model: nn.Module) -> nn.Linear | str:
    if method.head is not None:
        head = get_layer(model, method.head)
    else:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if not isinstance(head, nn.Linear):
        return f"head={method.head} is not an nn.Linear; CAM needs a linear head."
    return head


@need("linear_head", "global average pooling of the layer's K channels into one nn.Linear head")
def _linear_head(method: CAM, model: nn.Module) -> str | None:
    gap = [
        m
        for m in model.modules()
        if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))
    ]
    if not gap:
        return (
            "it has no global average pooling (nn.AdaptiveAvgPool2d(1)); "
            "CAM needs GAP + a linear head (use gradcam instead)."
        )
    head = _linear_head_of(method, model)
    if isinstance(head, str):
        return head
    name = stated_layer(method, model)
    probe = head_input(model, name, head) if name is not None else None
    if probe is None:
        return None
    maps, features = probe
    if maps.shape[1] != head.in_features:
        return (
            f"layer={name} has {maps.shape[1]} channels but the linear head takes "
            f"{head.in_features} features; CAM needs layer -> GAP -> linear."
        )
    gap = maps.mean((2, 3))
    diff = float((features - gap).abs().max())
    if features.shape != gap.shape or diff > 1e-4 * float(gap.abs().max().clamp_min(1)):
        return (
            f"the linear head's input is not the global average of layer={name} (max |difference| "
            f"{diff:.3g}: a module sits between them, e.g. a norm); CAM needs layer -> GAP -> "
            "linear (use gradcam instead)."
        )
    return None


class BaseCAM(Method):
    """``relu(sum_k w_k A_k)`` over the feature maps ``A`` ``[B, K, h, w]`` of ``layer``.

    Subclasses implement :meth:`weights`; ``A`` and the gradients of the target logits with
    respect to ``A`` are handed to it. The map is returned at the layer's resolution; the base
    class upsamples it bilinearly. A layer is any module whose output is feature maps
    ``[B, K, h, w]``, whatever its type (a conv block, a ReLU, a batch norm).

    Args:
        layer: the layer's name in ``model.named_modules()`` (from the model config's
            ``cam_layer``); ``auto`` = the layer the model's loader chose (``bench_meta``).
        relu: ``before_upsample`` (the papers, pytorch-grad-cam), ``after_upsample`` (captum's
            ``LayerGradCam`` + ``LayerAttribution.interpolate`` then a ReLU) or ``none``.
    """

    needs = frozenset({"feature_maps"})
    needs_gradients = True

    def __init__(self, layer: str | None, relu: str | bool = "before_upsample") -> None:
        super().__init__(reduction="sum")
        self.layer = layer
        self.relu = relu_rule(relu)

    def layer_name(self, model: nn.Module) -> str:
        """The layer's name in ``model``, ``auto`` resolved from the loader's metadata."""
        name = stated_layer(self, model)
        if name is None:
            raise self.unfit(model, NO_LAYER)
        return name

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        """Per-channel weights ``[B, K]`` (or per-position ``[B, K, h, w]``)."""
        raise NotImplementedError

    def to_grid(self, out: Tensor, layout: FeatureLayout | None, size: Sequence[int]) -> Tensor:
        """The layer's output as feature maps ``[B, K, h, w]`` for an input of ``size`` ``(H, W)``:
        read through the model's ``layout`` when its loader states one, else as is (conv layers)."""
        if layout is not None:
            return layout.to_maps(out, size)
        if out.ndim != 4:
            raise ConfigError(
                f"{self.name} needs a layer with [B, K, h, w] output; layer={self.layer} "
                f"gives shape {tuple(out.shape)}; accepted: any module with a 4-D output."
            )
        return out

    def activations(
        self, model: nn.Module, images: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Feature maps ``[B, K, h, w]`` of the layer and, if needed, d(target logit)/dA."""
        name = self.layer_name(model)
        layer = get_layer(model, name)
        store: dict[str, Tensor] = {}

        def hook(_module: nn.Module, _inp: tuple, out: Tensor) -> None:
            store["acts"] = out

        layout, size = layout_of(model), images.shape[-2:]
        handle = layer.register_forward_hook(hook)
        try:
            with torch.set_grad_enabled(self.needs_gradients):
                x = images.detach().requires_grad_(self.needs_gradients)
                logits = model(x)
                acts = store["acts"]
                grid = self.to_grid(acts, layout, size)
                grads = None
                if self.needs_gradients:
                    score = logits.gather(1, targets[:, None]).sum()
                    (grads,) = torch.autograd.grad(score, acts)
                    grads = self.to_grid(grads, layout, size)
        finally:
            handle.remove()
        return grid.detach(), grads

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        acts, grads = self.activations(model, images, targets)
        w = self.weights(acts, grads, model, images, targets)
        cam = (w[:, :, None, None] * acts).sum(1) if w.ndim == 2 else (w * acts).sum(1)
        return cam.clamp_min(0) if self.relu == "before_upsample" else cam

    def postprocess(self, raw: Tensor, size: torch.Size) -> Tensor:
        out = super().postprocess(raw, size)
        return out.clamp_min(0) if self.relu == "after_upsample" else out


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., ICCV 2017): weights = spatial mean of the gradients."""

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        return grads.mean(dim=(2, 3))


class CAM(BaseCAM):
    """CAM (Zhou et al., CVPR 2016): weights = the linear head's row for the class.

    Only for models whose ``layer`` feeds global average pooling and one linear head (ShapesCNN,
    ResNets); no gradients. The paper applies no ReLU (``relu: false``); on such models Grad-CAM
    equals CAM up to the factor ``1 / (h w)``.

    Args:
        layer: the last conv layer / block (the model config's ``cam_layer``).
        head: name of the final ``nn.Linear``; None = the last ``nn.Linear`` of the model.
        relu: ``none`` (the paper), ``before_upsample`` or ``after_upsample`` (see :class:`BaseCAM`).
    """

    needs = BaseCAM.needs | {"linear_head"}
    needs_gradients = False

    def __init__(
        self, layer: str | None, head: str | None = None, relu: str | bool = "none"
    ) -> None:
        super().__init__(layer, relu)
        self.head = head

    def head_of(self, model: nn.Module) -> nn.Linear:
        head = _linear_head_of(self, model)
        if isinstance(head, str):
            raise self.unfit(model, head, "linear_head")
        return head

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        head = self.head_of(model)
        if acts.shape[1] != head.in_features:
            raise self.unfit(
                model,
                f"layer={self.layer} gives {acts.shape[1]} channels, the head "
                f"takes {head.in_features}.",
                "linear_head",
            )
        return head.weight.detach()[targets]


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018): positive gradients weighted per position.

    ``alpha = g^2 / (2 g^2 + sum(A) g^3)`` (the paper's Eq. 19 with exponential output, as in
    pytorch-grad-cam), zero where the gradient is 0; weights = ``sum(alpha relu(g))``.
    """

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_acts = acts.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_acts * g3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * grads.clamp_min(0)).sum(dim=(2, 3))


class XGradCAM(BaseCAM):
    """XGrad-CAM (Fu et al., BMVC 2020): weights = ``sum(g A) / sum(A)`` per channel."""

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        return (grads * acts).sum(dim=(2, 3)) / (acts.sum(dim=(2, 3)) + 1e-7)


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al., IEEE TIP 2021): per-position weights ``relu(g)``."""

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        return grads.clamp_min(0)


class _ChannelScoreCAM(BaseCAM):
    """Shared knob of the CAMs that score one forward pass per (image, channel): no gradients,
    the ``B x K`` passes go through the model in chunks of ``batch_size`` (``for_pairs``).

    Args:
        layer: the model config's ``cam_layer``.
        batch_size: most of the ``B x K`` passes (over all images of the batch) per forward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        relu: as :class:`BaseCAM`'s.
    """

    needs_gradients = False

    def __init__(
        self,
        layer: str | None,
        batch_size: int | str | None = "auto",
        relu: str | bool = "before_upsample",
    ) -> None:
        super().__init__(layer, relu)
        self.batch_size = check_batch_size("batch_size", batch_size)

    @torch.no_grad()
    def channel_scores(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        channels: int,
        inputs: Callable[[Tensor, Tensor], Tensor],
    ) -> Tensor:
        """Target logits ``[B, K]``: ``model(inputs(img, ch))`` for every (image, channel) pair,
        ``img`` and ``ch`` being the pairs' long indices ``[k]`` of one chunk."""
        b = images.shape[0]
        scores = torch.empty(b * channels, device=images.device)

        def chunk(part: slice, img: Tensor, ch: Tensor) -> None:
            logits = model(inputs(img, ch))
            scores[part] = logits.gather(1, targets[img][:, None])[:, 0].float()

        chunked_pairs(self, "batch_size", b, channels, images.device, chunk, type(self).__name__)
        return scores.view(b, channels)


class ScoreCAM(_ChannelScoreCAM):
    """Score-CAM (Wang et al., CVPR-W 2020): weights from the score of the input masked by each map.

    Each feature map is upsampled bilinearly to the input, min-max scaled to [0, 1] and multiplied
    with the image; the target logits of all ``B x K`` masked images (run in chunks of
    ``batch_size``) are softmaxed over the channels, as in pytorch-grad-cam. Settings: those of
    :class:`_ChannelScoreCAM` (``batch_size`` bounds the masked images per forward pass).
    """

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        def masked(img: Tensor, ch: Tensor) -> Tensor:
            up = F.interpolate(
                acts[img, ch][:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
            )
            lo = up.amin(dim=(2, 3), keepdim=True)
            hi = up.amax(dim=(2, 3), keepdim=True)
            return images[img] * ((up - lo) / (hi - lo + 1e-8))

        return self.channel_scores(model, images, targets, acts.shape[1], masked).softmax(dim=1)


class AblationCAM(_ChannelScoreCAM):
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020): weight = relative score drop when a map is zeroed.

    ``w_k = (y_c - y_c^k) / y_c`` with ``y_c^k`` the target logit when channel ``k`` of the layer's
    output is set to 0. All ``B x K`` ablations run in chunks of ``batch_size`` (a forward hook
    substitutes the ablated activations). Settings: those of :class:`_ChannelScoreCAM`
    (``batch_size`` bounds the ablated copies per forward pass).
    """

    def weights(
        self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor, targets: Tensor
    ) -> Tensor:
        layer = get_layer(model, self.layer_name(model))
        layout = layout_of(model) or FeatureLayout()
        current: dict[str, Tensor] = {}
        handle = layer.register_forward_hook(lambda _m, _i, out: current.setdefault("raw", out))
        try:
            with torch.no_grad():
                base = model(images).gather(1, targets[:, None])[:, 0].float()
        finally:
            handle.remove()
        raw = current.pop("raw")  # the layer's output in its own layout (tokens, channels last)

        def ablated(img: Tensor, ch: Tensor) -> Tensor:
            # what the hook hands the rest of the network: channel ch of image img set to 0
            current["out"] = layout.zero_channels(raw[img], ch)
            return images[img]

        handle = layer.register_forward_hook(lambda _m, _i, _o: current["out"])
        try:
            scores = self.channel_scores(model, images, targets, acts.shape[1], ablated)
        finally:
            handle.remove()
        return (base[:, None] - scores) / base[:, None]


class EigenCAM(BaseCAM):
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): projection of the feature maps on their first
    principal component (class-agnostic; no gradients).

    The SVD's sign is arbitrary; it is fixed so that the largest magnitude is positive (the sign
    correction of Seg-Eigen-CAM, Eq. 13; pytorch-grad-cam's EigenCAM leaves it to LAPACK).
    """

    needs_gradients = False

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        acts, _ = self.activations(model, images, targets)
        b, k, h, w = acts.shape
        flat = acts.flatten(2).transpose(1, 2).double()  # [B, hw, K]
        flat = flat - flat.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)
        proj = (flat @ vh[:, 0, :, None])[..., 0]  # [B, hw]
        flip = proj.amin(1).abs() > proj.amax(1).abs()
        proj = torch.where(flip[:, None], -proj, proj).float().view(b, h, w)
        return proj.clamp_min(0) if self.relu == "before_upsample" else proj


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017): guided backprop times the upsampled Grad-CAM.

    Channel-wise product ``[B, 3, H, W]``, pooled with ``reduction`` (``max_abs`` by default).
    """

    needs = GradCAM.needs | {"relu_modules"}  # guided backprop's

    def __init__(self, layer: str | None, reduction: str = "max_abs") -> None:
        super().__init__(layer, relu=True)
        from bench.methods.gradient import GuidedBackprop  # captum: imported only where it is used

        self._guided = GuidedBackprop(reduction=reduction)
        self.reduction = self._guided.reduction

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        cam = super().attribute(model, images, targets)
        cam = F.interpolate(
            cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        return self._guided.attribute(model, images, targets) * cam


class ActivationMap(BaseCAM):
    """A layer's feature maps ``[B, K, h, w]`` pooled over channels (``reduction``) and upsampled.

    Class-agnostic: shows where the layer responds, not why the class was chosen.

    Args:
        layer: the model config's ``cam_layer`` (any conv layer or block by name).
        reduction: channel pooling, one of ``bench.methods.base.REDUCTIONS`` (``sum`` by default).
    """

    needs_gradients = False

    def __init__(self, layer: str | None, reduction: str = "sum") -> None:
        super().__init__(layer, relu=False)
        Method.__init__(self, reduction)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        acts, _ = self.activations(model, images, targets)
        return acts
