"""The install itself: every package is shipped, and a CPU machine never gets a CUDA torch."""

import os
import pathlib
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_dirs():
    """Every folder with an __init__.py under fastdis/, kernels/ and bench/, as an import name."""
    found = set()
    for top, name in (("fastdis", "fastdis"), ("kernels", "fastdis.kernels"),
                      ("bench", "fastdis.bench")):
        for init in (ROOT / top).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *relative)))
    return found


def test_every_package_is_listed_for_installation():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert _package_dirs() == listed


def test_kernels_and_bench_folders_are_installed_inside_fastdis():
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {
        "fastdis.kernels": "kernels", "fastdis.bench": "bench"}
    import fastdis.bench
    import fastdis.kernels

    assert pathlib.Path(fastdis.kernels.__file__).parent == ROOT / "kernels"
    assert pathlib.Path(fastdis.bench.__file__).parent == ROOT / "bench"


def test_torch_is_pinned_exactly():
    # An open range resolves to a multi-GB CUDA build on a CPU machine.
    torch_requirements = [r for r in PYPROJECT["project"]["dependencies"] if r.startswith("torch")]
    assert torch_requirements == ["torch==2.13.0"]


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="a GPU machine brings its own torch")
def test_cpu_machine_has_the_cpu_build_of_torch():
    import torch

    assert "+cpu" in torch.__version__, torch.__version__
