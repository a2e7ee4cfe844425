"""Build-time only: copy the resources the package reads (the Hydra configs in ``conf/``, less
the per-machine ``conf/local/``, the committed checkpoints ``results/reference/models/*.pt`` and
``docs/PROTOCOLS.md``, which the report quotes)
into ``bench/_data`` of the wheel. All metadata is in pyproject.toml; an editable install
(``pip install -e .``) copies nothing and keeps reading the checkout (bench/core/paths.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: (source folder, file pattern, folders left out), relative to the project root.
RESOURCES = (
    ("conf", "*", ("local",)),
    ("results/reference/models", "*.pt", ()),
    ("docs", "PROTOCOLS.md", ()),  # the report shows each metric's protocol from it
)
TARGET = Path("bench", "_data")


def resource_files() -> list[Path]:
    """The files copied, relative to the project root (sorted; dot-files and left-out folders
    skipped)."""
    out: list[Path] = []
    for folder, pattern, skip in RESOURCES:
        for p in sorted((HERE / folder).rglob(pattern)):
            rel = p.relative_to(HERE)
            inside = rel.relative_to(folder).parts
            if p.is_file() and inside[0] not in skip and not any(s.startswith(".") for s in inside):
                out.append(rel)
    return out


class BuildPyWithData(build_py):
    """build_py, plus the resources copied under ``bench/_data`` of the build folder."""

    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            # nothing stale from an earlier build: a package that moved (methods/ became
            # bench.methods) would otherwise be shipped under its old name too
            shutil.rmtree(self.build_lib, ignore_errors=True)
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        target = Path(self.build_lib, TARGET)
        if target.exists():
            shutil.rmtree(target)  # nothing stale from an earlier build (a deleted or local file)
        files = resource_files()
        if Path("conf", "config.yaml") not in files:
            raise RuntimeError(f"no conf/config.yaml under {HERE}: nothing to ship as bench/_data")
        for rel in files:
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(HERE / rel, dest)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        if getattr(self, "editable_mode", False):
            return super().get_outputs(include_bytecode)
        extra = [str(Path(self.build_lib, TARGET, rel)) for rel in resource_files()]
        return [*super().get_outputs(include_bytecode), *extra]


setup(cmdclass={"build_py": BuildPyWithData})
