"""Where code comes from: the standard library, a library this tool uses, or the user's own.

A library is identified by its distribution and version (``torchvision==0.29.1``), the user's
own code (and this project's) by the bytes of its source file. The attribution cache keys a
model's code this way (:func:`code_identity`), and ``model.module`` may name a function only from
the user's own code (:func:`check_model_object`): ``torch.load`` or ``pandas.read_pickle`` would
unpickle a file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import re
import secrets
import sys
from functools import cache
from pathlib import Path

from bench.core.errors import ConfigError

#: This project's own packages (their code is hashed: an editable install keeps one version).
OWN = ("bench",)
#: Always libraries, whether or not they are installed as distributions here.
LIBRARIES = frozenset(
    {
        "torch", "torchvision", "numpy", "pandas", "scipy", "sklearn", "skimage", "captum",
        "lime", "shap", "joblib", "hydra", "omegaconf", "matplotlib", "PIL", "cv2", "tqdm",
        "timm", "transformers", "safetensors", "huggingface_hub", "dill", "cloudpickle", "yaml",
        "h5py", "ray", "submitit", "tensorboard", "numba",
    }
)  # fmt: skip
STDLIB = frozenset(sys.stdlib_module_names) | {"builtins"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _distributions() -> dict[str, list[str]]:
    """Top-level import name -> the distributions that provide it."""
    try:
        return dict(importlib.metadata.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata: nothing is known to be a library
        return {}


@cache
def library_roots() -> frozenset[str]:
    """Top-level import names that are not a user's own code: the standard library, this
    project's packages, :data:`LIBRARIES` and every distribution this tool depends on
    (followed recursively through the installed metadata)."""
    roots = set(STDLIB) | set(LIBRARIES) | set(OWN)
    by_dist: dict[str, set[str]] = {}
    for top, dists in _distributions().items():
        for d in dists:
            by_dist.setdefault(_norm(d), set()).add(top)
    seen: set[str] = set()
    todo = ["attribution-bench"]
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        roots |= by_dist.get(name, set())
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in requires:
            match = re.match(r"[A-Za-z0-9._-]+", req)
            if match and "extra ==" not in req:
                todo.append(match.group(0))
    return frozenset(roots)


def top_module(obj: object) -> str:
    """The top-level package ``obj`` (a class or function) was defined in."""
    return (getattr(obj, "__module__", None) or "").split(".")[0]


def check_model_object(path: str, obj: object) -> None:
    """``obj``, what ``model.module=path`` names, is an ``nn.Module`` class or a function of the
    user's own code; else a one-line ConfigError (never ``torch.load``, ``numpy.load``, ...)."""
    from torch import nn

    origin = top_module(obj)
    if inspect.isclass(obj) and issubclass(obj, nn.Module):
        return
    if inspect.isfunction(obj) and origin and origin not in library_roots():
        return
    what = "function" if inspect.isfunction(obj) or inspect.isbuiltin(obj) else type(obj).__name__
    raise ConfigError(
        f"model.module={path} is a {what} from {origin or 'an unknown module'}; accepted: an "
        "nn.Module subclass, or a function of your own code that returns one (not a loader of the "
        "standard library or of a package this tool uses: a pickled model goes through "
        "model.checkpoint with model.trust_checkpoint=true)."
    )


#: Stands for code whose source cannot be read: keys made with it never match another process's.
PROCESS = secrets.token_hex(8)


def _file_digest(path: str) -> str:
    st = Path(path).stat()
    return _digest(path, st.st_mtime_ns, st.st_size)


@cache
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_identity(obj: object) -> str:
    """What identifies the code of ``obj`` (a class or function): ``dist==version`` for a library
    installed as a distribution (this project excepted), else the module's name and the SHA-256 of
    its source file; for code without a file (a class typed into a notebook) the SHA-256 of its
    source text, or, when even that cannot be read, a token unique to this object in this process
    (so a cache keyed by it is never shared with other code)."""
    module = getattr(obj, "__module__", None) or ""
    top = module.split(".")[0]
    if top in STDLIB:
        return f"python=={sys.version.split()[0]}:{module}"
    dists = _distributions().get(top, [])
    if dists and top not in OWN:
        versions = []
        for d in sorted(set(dists)):
            try:
                versions.append(f"{d}=={importlib.metadata.version(d)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(d)
        return ",".join(versions)
    try:
        source = inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:
        source = None
    if source and Path(source).is_file():
        return f"{module}:{_file_digest(source)}"
    try:
        text = inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return f"{module}:unreadable:{PROCESS}:{id(obj)}"
    return f"{module}:{hashlib.sha256(text.encode()).hexdigest()}"
