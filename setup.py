"""Builds the engine's C kernels (src/workbench/engine/csrc/wbkernels.c) when the package is installed.

Everything else about the package is declared in pyproject.toml. The kernels are a plain C shared
library loaded with ctypes (workbench/engine/native.py), not a CPython module: no Python headers or
init function are needed, and one build serves every x86-64 CPU because the C picks scalar, AVX2 or
AVX-512 code at run time. Development rebuild: `python setup.py build_ext --inplace` (`make kernels`).
"""

import os
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildKernels(build_ext):
    """No Python init symbol to export: the library is opened with ctypes. The in-place copy is
    atomic: running processes may have the old library mapped, and overwriting it in place would
    crash them."""

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return []

    def copy_file(self, infile: str, outfile: str, *args: Any, **kwargs: Any) -> tuple[str, bool]:
        tmp = f"{outfile}.tmp{os.getpid()}"
        _, copied = super().copy_file(infile, tmp, *args, **kwargs)
        os.replace(tmp, outfile)
        return outfile, copied


setup(
    ext_modules=[
        Extension(
            "workbench.engine._wbkernels",
            sources=["src/workbench/engine/csrc/wbkernels.c"],
            extra_compile_args=["-O3", "-pthread", "-ffp-contract=off"],
            extra_link_args=["-pthread"],
            libraries=["m"],
        )
    ],
    cmdclass={"build_ext": BuildKernels},
)
