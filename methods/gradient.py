"""Gradient-based methods, computed by captum (wrapped, not rewritten).

Noise wrappers (SmoothGrad, VarGrad) compose with any method, as captum's ``NoiseTunnel`` does,
but draw their noise from a counter-based hash of ``(seed, image content)`` on the device, so maps
are deterministic under the run seed and the same whatever batch an image is in.
"""

from __future__ import annotations

import operator

import torch
from captum.attr import LRP as _CaptumLRP
from captum.attr import Deconvolution as _CaptumDeconvolution
from captum.attr import DeepLift as _CaptumDeepLift
from captum.attr import GuidedBackprop as _CaptumGuidedBackprop
from captum.attr import InputXGradient as _CaptumInputXGradient
from captum.attr import IntegratedGradients as _CaptumIG
from captum.attr import Saliency as _CaptumSaliency
from captum.attr._utils.lrp_rules import EpsilonRule
from torch import Tensor, nn

from bench.core.errors import ConfigError, check_choice, check_int, check_number
from bench.core.rng import content_keys, hash_uniform, keyed_normal
from bench.methods.base import Method, batch_limit, check_batch_size, chunked_pairs, need


class Gradient(Method):
    """Gradient saliency ``|dy_c/dx|`` (Simonyan et al., ICLR-W 2014), max over channels by default.

    Args:
        reduction: channel pooling (``max_abs``, as in the paper and TorchRay).
        abs: absolute gradient (the paper); ``false`` keeps the sign (VarGrad's input).
        smooth: Gaussian sigma / max(H, W) of the final map (TorchRay: 0.02).
    """

    def __init__(self, reduction: str = "max_abs", abs: bool = True, smooth: float = 0.0) -> None:
        super().__init__(reduction, smooth)
        self.abs = bool(abs)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return _CaptumSaliency(model).attribute(images, target=targets, abs=self.abs)


class InputXGradient(Method):
    """Input x gradient (Shrikumar et al., 2016), summed over channels by default."""

    def __init__(self, reduction: str = "sum", smooth: float = 0.0) -> None:
        super().__init__(reduction, smooth)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return _CaptumInputXGradient(model).attribute(images, target=targets)


class _ReLUBackward(Method):
    """A captum method that rewrites the backward pass of ``nn.ReLU`` modules (``_captum``).

    Max over channels by default (TorchRay); ReLU networks only.
    """

    needs = frozenset({"relu_modules"})
    _captum: type

    def __init__(self, reduction: str = "max_abs", smooth: float = 0.0) -> None:
        super().__init__(reduction, smooth)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return self._captum(model).attribute(images, target=targets)


class GuidedBackprop(_ReLUBackward):
    """Guided backpropagation (Springenberg et al., ICLR-W 2015): only positive gradients pass ReLUs."""

    _captum = _CaptumGuidedBackprop


class Deconvolution(_ReLUBackward):
    """Deconvnet (Zeiler & Fergus, ECCV 2014): the ReLU backward pass applied to the gradient itself."""

    _captum = _CaptumDeconvolution


#: captum's integration rules for the path integral.
INTEGRATIONS = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)


class IntegratedGradients(Method):
    """Integrated gradients (Sundararajan et al., ICML 2017) along the straight path from a baseline.

    Args:
        n_steps: points of the path integral.
        baseline: constant baseline value in normalised space (0 = the dataset mean colour).
        integration: captum's rule, ``gausslegendre`` or ``riemann_trapezoid`` etc. (the
            trapezoid's weights rescaled to sum to 1; captum's sum to ``(n_steps - 1) / n_steps``).
        internal_batch_size: most path points (over all images) in one forward/backward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        reduction: channel pooling (signed sum by default).
    """

    def __init__(
        self,
        n_steps: int = 50,
        baseline: float = 0.0,
        integration: str = "gausslegendre",
        internal_batch_size: int | str | None = "auto",
        reduction: str = "sum",
    ) -> None:
        super().__init__(reduction)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)
        self.baseline = check_number("baseline", baseline)
        self.integration = check_choice("integration", integration, INTEGRATIONS)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        a = _CaptumIG(model).attribute(
            images,
            baselines=self.baseline,
            target=targets,
            n_steps=self.n_steps,
            method=self.integration,
            internal_batch_size=batch_limit(self.internal_batch_size, images.device),
        )
        if self.integration == "riemann_trapezoid":
            # captum (0.9) evaluates the n points linspace(0, 1, n), spaced 1/(n-1), but weighs
            # them 1/(2n), 1/n, ..., 1/(2n): (n-1)/n in all, so the integral (and completeness)
            # comes out 1/n short. The trapezoid rule's weights are n/(n-1) times captum's.
            a = a * (self.n_steps / (self.n_steps - 1))
        return a


def _trace(model: nn.Module):
    """The model's ``torch.fx`` graph, or None when it cannot be traced symbolically."""
    try:
        return torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any tracing failure means "cannot decide statically"
        return None


def _reused_modules(model: nn.Module, kinds: tuple[type, ...]) -> list[str]:
    """Names of modules of ``kinds`` that the forward pass calls more than once (via torch.fx)."""
    graph = _trace(model)
    if graph is None:
        return []
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(model.get_submodule(node.target), kinds):
            counts[node.target] = counts.get(node.target, 0) + 1
    return [name for name, n in counts.items() if n > 1]


#: Leaf modules DeepLIFT's rescale rule treats correctly (linear ones or captum's nonlinearities).
_DEEPLIFT_NONLINEAR = (
    nn.ReLU,
    nn.ELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softmax,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
)
_LINEAR_LEAVES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)


def _leaves_without_rule(
    model: nn.Module, ruled: tuple[type, ...], rules: str, accepted: str
) -> str | None:
    """Why captum's ``rules`` (DeepLIFT, LRP) cannot apply to ``model``: the types of its leaf
    modules that are not ``ruled`` (``accepted`` says which are, in words); None when none."""
    leaves = [m for m in model.modules() if not list(m.children())]
    other = sorted({type(m).__name__ for m in leaves if not isinstance(m, ruled)})
    if not other:
        return None
    return (
        f"captum's {rules} has no rule for {', '.join(other)}; accepted leaf modules: {accepted}."
    )


@need("deeplift_rules", "only leaf modules captum's DeepLIFT has a rule for (linear, ReLU-like)")
def _deeplift_rules(method: Method, model: nn.Module) -> str | None:
    accepted = "convolutions, linear, batch norm, pooling, ReLU-like"
    return _leaves_without_rule(model, _DEEPLIFT_NONLINEAR + _LINEAR_LEAVES, "DeepLIFT", accepted)


@need("single_use_nonlinearities", "each nonlinear module called once per forward pass")
def _single_use_nonlinearities(method: Method, model: nn.Module) -> str | None:
    reused = _reused_modules(model, _DEEPLIFT_NONLINEAR)
    if not reused:
        return None
    return (
        f"nonlinear modules called more than once ({', '.join(reused[:3])}); "
        "captum's DeepLIFT needs one module per call (no module reuse)."
    )


class DeepLift(Method):
    """DeepLIFT, rescale rule (Shrikumar et al., ICML 2017), as implemented by captum.

    Applies to networks built from linear modules and ``nn.ReLU``-like modules each called once:
    captum stores a module's input on the module, so a reused ReLU (torchvision's ResNet blocks)
    gives wrong multipliers, and functional nonlinearities (attention's softmax, GELU) get plain
    gradients. Both are refused in :meth:`check` (needs ``deeplift_rules`` and
    ``single_use_nonlinearities``).

    Args:
        baseline: constant reference value in normalised space (0 = the dataset mean colour).
        reduction: channel pooling (signed sum by default).
    """

    needs = frozenset({"deeplift_rules", "single_use_nonlinearities"})

    def __init__(self, baseline: float = 0.0, reduction: str = "sum") -> None:
        super().__init__(reduction)
        self.baseline = check_number("baseline", baseline)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return _CaptumDeepLift(model).attribute(images, baselines=self.baseline, target=targets)


_LRP_LEAVES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.Conv2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.Dropout,
    nn.Tanh,
    nn.Flatten,
    nn.Identity,
)
_SHAPE_OPS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "size"}


@need("lrp_rules", "only leaf modules captum's LRP has a rule for (conv, linear, pooling, ReLU)")
def _lrp_rules(method: Method, model: nn.Module) -> str | None:
    accepted = "Conv2d, Linear, BatchNorm2d, pooling, ReLU, Dropout, Tanh"
    return _leaves_without_rule(model, _LRP_LEAVES, "LRP", accepted)


@need("modules_only", "a forward pass that computes only in modules (no skip connections)")
def _modules_only(method: Method, model: nn.Module) -> str | None:
    graph = _trace(model)
    if graph is None:
        return None
    for node in graph.nodes:
        if node.op == "call_function" and node.target not in (torch.flatten, operator.getitem):
            return (
                f"its forward applies {getattr(node.target, '__name__', node.target)} "
                "outside a module (e.g. a skip connection); captum's LRP propagates "
                "relevance through modules only."
            )
        if node.op == "call_method" and node.target not in _SHAPE_OPS:
            return (
                f"its forward calls tensor.{node.target} outside a module; "
                "captum's LRP propagates relevance through modules only."
            )
    return None


class LRP(Method):
    """Layer-wise relevance propagation with the epsilon rule (Bach et al., PLoS ONE 2015), by captum.

    Every layer with a rule gets ``EpsilonRule(epsilon)``. Applies to sequential networks whose
    leaves captum's LRP supports (conv, linear, batch norm, pooling, ReLU); relevance flows only
    through modules, so a functional add (ResNet's skip connections) or attention is refused in
    :meth:`check` (needs ``lrp_rules`` and ``modules_only``).

    Args:
        epsilon: the stabiliser of the epsilon rule (captum's default 1e-9).
        reduction: channel pooling (signed sum by default).
    """

    needs = frozenset({"lrp_rules", "modules_only"})

    def __init__(self, epsilon: float = 1e-9, reduction: str = "sum") -> None:
        super().__init__(reduction)
        self.epsilon = check_number("epsilon", epsilon, minimum=0)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        modules = list(model.modules())
        before = [set(vars(m)) for m in modules]
        try:
            for m in modules:
                if isinstance(
                    m,
                    (
                        nn.Conv2d,
                        nn.Linear,
                        nn.BatchNorm2d,
                        nn.MaxPool2d,
                        nn.AvgPool2d,
                        nn.AdaptiveAvgPool2d,
                    ),
                ):
                    m.rule = EpsilonRule(epsilon=self.epsilon)
            return _CaptumLRP(model).attribute(images, target=targets)
        finally:  # captum leaves ``rule`` / ``activations`` attributes on the modules: remove them
            for m, keys in zip(modules, before):
                for key in set(vars(m)) - keys:
                    delattr(m, key)


class _Noisy(Method):
    """Shared settings and loop of the noise wrappers: ``n_samples`` noisy copies of each image,
    chunked; ``default_method()`` is the method wrapped when the config names none."""

    def __init__(
        self,
        method: Method | None = None,
        n_samples: int = 50,
        noise_level: float = 0.15,
        internal_batch_size: int | str | None = "auto",
        seed: int = 0,
    ) -> None:
        method = self.default_method() if method is None else method
        if not isinstance(method, Method):
            raise ConfigError(
                f"method={method!r} is not valid; accepted: a methods.* Method "
                "(a nested config with a _target_)."
            )
        super().__init__(method.reduction, getattr(method, "smooth", 0.0))
        self.method = method
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.noise_level = check_number("noise_level", noise_level, minimum=0)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)
        self.seed = check_int("seed", seed)

    @staticmethod
    def default_method() -> Method:
        return Gradient()

    @property
    def name(self) -> str:
        return f"{type(self).__name__}({self.method.name})"

    def all_needs(self) -> frozenset[str]:
        return type(self).needs | self.method.all_needs()

    def unmet(self, model: nn.Module) -> tuple[str, str] | None:
        """The wrapped method's unmet need (its layer, its model): it is what runs."""
        return self.method.unmet(model)

    def samples(self, model: nn.Module, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Sum and sum of squares over the noisy samples of the wrapped method's raw attributions."""
        b, n = images.shape[0], self.n_samples
        keys = content_keys(images, self.seed)
        sigma = self.noise_level * (images.flatten(1).amax(1) - images.flatten(1).amin(1))  # [B]
        numel = images[0].numel()
        acc: dict[str, Tensor] = {}

        def chunk(_: slice, img: Tensor, smp: Tensor) -> None:
            noise = keyed_normal(keys[img], smp, numel).view(len(img), *images.shape[1:])
            x = images[img] + sigma[img, None, None, None] * noise
            a = self.method.attribute(model, x, targets[img]).detach().float()
            s = torch.zeros(b, *a.shape[1:], device=a.device).index_add_(0, img, a)
            q = torch.zeros_like(s).index_add_(0, img, a * a)
            total, sq = (s, q) if not acc else (acc["total"] + s, acc["sq"] + q)
            acc.update(total=total, sq=sq)  # only once the chunk has succeeded

        chunked_pairs(self, "internal_batch_size", b, n, images.device, chunk)
        return acc["total"], acc["sq"]


class SmoothGrad(_Noisy):
    """SmoothGrad (Smilkov et al., 2017): the mean of a method's maps over noisy copies of the input.

    Noise is Gaussian with sigma = ``noise_level`` x (max - min) of each image (the paper: 10-20 %).
    Wraps any method (gradient by default), as captum's ``NoiseTunnel`` does.

    Args:
        method: the wrapped method (a nested config).
        n_samples: noisy copies per image (the paper: 50).
        noise_level: noise sigma as a fraction of the image's value range.
        internal_batch_size: most noisy copies (over all images) per call of the wrapped method;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        seed: the run seed.
    """

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        total, _ = self.samples(model, images, targets)
        return total / self.n_samples


class VarGrad(_Noisy):
    """VarGrad (Adebayo et al., ICLR-W 2018): the variance of a method's maps over noisy inputs.

    Same noise as :class:`SmoothGrad`; wraps the signed gradient by default (``abs: false``).
    """

    @staticmethod
    def default_method() -> Method:
        return Gradient(abs=False)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        total, sq = self.samples(model, images, targets)
        mean = total / self.n_samples
        return (sq / self.n_samples - mean * mean).clamp_min(0)


class GradientShap(Method):
    """GradientSHAP / expected gradients (Lundberg & Lee, NeurIPS 2017; captum's GradientShap).

    For each of ``n_samples`` draws: a baseline ``b = baseline + baseline_std * N(0, 1)``, input
    noise ``e = stdev * N(0, 1)``, ``alpha ~ U(0, 1)``; attribution ``(x + e - b) * grad f(b + alpha
    (x + e - b))``, averaged. Gradients by captum's ``Saliency``; the draws come from a hash of
    ``(seed, image content)`` (captum's own GradientShap uses the global RNG).

    Args:
        n_samples: draws per image (captum: 5; SHAP's examples: 50+).
        stdev: input noise sigma in normalised units (captum's default 0).
        baseline: centre of the baseline distribution in normalised space (0 = mean colour).
        baseline_std: spread of the baseline distribution (0 = one constant baseline).
        internal_batch_size: most draws (over all images) in one forward/backward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        reduction: channel pooling (signed sum by default).
        seed: the run seed.
    """

    def __init__(
        self,
        n_samples: int = 50,
        stdev: float = 0.0,
        baseline: float = 0.0,
        baseline_std: float = 1.0,
        internal_batch_size: int | str | None = "auto",
        reduction: str = "sum",
        seed: int = 0,
    ) -> None:
        super().__init__(reduction)
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.stdev = check_number("stdev", stdev, minimum=0)
        self.baseline = check_number("baseline", baseline)
        self.baseline_std = check_number("baseline_std", baseline_std, minimum=0)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)
        self.seed = check_int("seed", seed)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        b, n = images.shape[0], self.n_samples
        keys = content_keys(images, self.seed)
        numel = images[0].numel()
        saliency = _CaptumSaliency(model)
        total = torch.zeros_like(images, dtype=torch.float32)

        def chunk(_: slice, img: Tensor, smp: Tensor) -> None:
            shape = (len(img), *images.shape[1:])
            x = images[img] + self.stdev * keyed_normal(keys[img] ^ 1, smp, numel).view(shape)
            noise = keyed_normal(keys[img] ^ 2, smp, numel).view(shape)
            base = self.baseline + self.baseline_std * noise
            alpha = hash_uniform(keys[img] ^ 3, smp)
            point = base + alpha[:, None, None, None] * (x - base)
            grad = saliency.attribute(point, target=targets[img], abs=False)
            total.index_add_(0, img, ((x - base) * grad).float())

        chunked_pairs(self, "internal_batch_size", b, n, images.device, chunk, "gradient_shap")
        return total / n
