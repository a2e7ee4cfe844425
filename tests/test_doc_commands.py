"""Every command block of the README and docs/ names only what exists: each entry point, each option
of our console scripts, each config option, make target, script, module and committed file it
names (issue 25). A block is run as written after ``make bench`` with ``.venv`` activated, so no
block may call ``.venv/bin/...`` (the docs say once how to activate it) or install a package that
is not published (``pip install attribution-bench``)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from functools import cache

import pytest

from bench import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|sh|shell|console)\n(.*?)^```", re.S | re.M)
# Commands of the system or of other tools that a block may call as they are.
OTHER = {
    "cd", "rm", "mkdir", "cp", "cat", "ls", "export", "source", "git", "pip", "tmux", "screen",
    "tensorboard", "ray", "gh", "sbatch", "squeue", "apt-get", "sudo", "chromium", "echo", "for",
    "do", "done", "xdg-open", "open", "mkdocs", "python3",
}  # fmt: skip
HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "--package", "--config-path", "--help", "-h", "--info"}
GROUPS = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()} | {"hydra/launcher"}
# The launchers of the Hydra plugins in the extras (conf/hydra/launcher/ adds keys to some of them).
LAUNCHERS = {"basic", "joblib", "submitit_local", "submitit_slurm", "ray"}
REPO_PATH = re.compile(r"^(conf|scripts|results/reference|docs|tests|bench|methods|metrics)/")


def blocks() -> list[tuple[str, str]]:
    """``(page:line, command)`` for every command of every shell block: continuation lines joined,
    comments and prompts dropped, ``&&`` / ``;`` / ``|`` chains split."""
    out = []
    for page in DOCS:
        text = page.read_text()
        for m in FENCE.finditer(text):
            line_no = text[: m.start()].count("\n") + 2
            body = re.sub(r"\\\n\s*", " ", m.group(2))
            for i, line in enumerate(body.splitlines()):
                line = line.strip()
                if line.startswith("$ "):
                    line = line[2:]
                elif m.group(1) == "console":
                    continue  # output lines of a console block
                line = _strip_comment(line)
                for part in re.split(r"\s*(?:&&|;|\|\|?)\s*", line):
                    if part:
                        out.append((f"{page.relative_to(ROOT)}:{line_no + i}", part))
    return out


@cache
def pip_installed() -> set[str]:
    """The packages the documented commands install themselves (``pip install build && python -m
    build``): their modules need not be in the test environment. (A ``build/`` folder in the
    checkout, which ``make docs`` writes, would otherwise hide a missing ``build`` module.)"""
    names = set()
    for _, command in blocks():
        words = command.split()
        if words[:2] == ["pip", "install"]:
            names |= {w for w in words[2:] if not w.startswith("-") and "/" not in w}
    return names


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes, after a space)."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] == " "):
            return line[:i].strip()
    return line


@cache
def entry_points() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: console script -> ``module:function``."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]+)"', section, re.M))


def scripts() -> set[str]:
    return set(entry_points())


@cache
def options_of(tool: str) -> str:
    """The ``--help`` text of one of our console scripts."""
    module = entry_points()[tool].split(":")[0]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; from {module} import main; sys.exit(main(['--help']))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return done.stdout


@cache
def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def _check_override(token: str) -> str | None:
    key, _, value = token.lstrip("+~").partition("=")
    if key not in GROUPS or not value or "$" in value or "<" in value:
        return None
    if value.startswith("glob("):
        return None
    if key == "hydra/launcher":
        return None if value in LAUNCHERS else f"hydra/launcher={value}: not one of {LAUNCHERS}"
    folder = ROOT / "conf" / key
    for name in re.split(r"[\[\],]", value):
        name = name.strip("'\" ")
        if name and not (folder / f"{name}.yaml").is_file():
            return f"{key}={name}: no conf/{key}/{name}.yaml"
    return None


def problems(command: str) -> list[str]:
    """What in one command does not exist (empty when all it names does)."""
    try:
        words = shlex.split(command)
    except ValueError as err:
        return [f"cannot parse ({err})"]
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return []
    tool, args = words[0], words[1:]
    found = []
    if tool.startswith(".venv/bin/"):
        return [f"{tool}: call it as {tool.removeprefix('.venv/bin/')} (with .venv activated)"]
    if tool == "pip" and "attribution-bench" in args:
        return ["pip install attribution-bench: the package is not published"]
    if tool in {"python", "python3"} and args:
        if args[0] == "-m":
            if importlib.util.find_spec(args[1]) is None and args[1] not in pip_installed():
                found.append(f"python -m {args[1]}: no such module")
        elif args[0].endswith(".py") and not (ROOT / args[0]).is_file():
            found.append(f"{args[0]}: no such script")
        return found
    if tool == "make":
        return [f"make {t}: no such target" for t in args if t not in make_targets()]
    if tool == "bench":
        for a in args:
            if a.startswith("-") and a.split("=")[0] not in HYDRA_FLAGS:
                found.append(f"bench {a}: not a flag of bench (Hydra's: {sorted(HYDRA_FLAGS)})")
            elif (msg := _check_override(a)) is not None:
                found.append(msg)
        return found
    if tool in scripts():
        help_text = options_of(tool)
        for a in args:
            if a.startswith("--") and a.split("=")[0] not in help_text:
                found.append(f"{tool} {a}: not an option (see {tool} --help)")
        return found
    if tool not in OTHER:
        return [f"{tool}: not one of our tools nor a known command (add it to OTHER if real)"]
    return found


def named_files(command: str) -> list[str]:
    """Repository paths a command names that do not exist (committed files and folders only)."""
    missing = []
    for word in re.split(r"[\s=,\[\]'\"]+", command):
        if REPO_PATH.match(word) and not any(c in word for c in "<>$*{"):
            if not (ROOT / word.rstrip("/.")).exists():
                missing.append(word)
    return missing


def test_there_are_command_blocks():
    assert len(blocks()) > 20


@pytest.mark.parametrize("where,command", blocks(), ids=[w for w, _ in blocks()])
def test_each_command_names_only_what_exists(where, command):
    bad = problems(command) + [f"{p}: no such file in the repository" for p in named_files(command)]
    assert not bad, f"{where}: `{command}`: " + "; ".join(bad)
