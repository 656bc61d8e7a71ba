"""What the default bundle leaves out, shared by the spec and the hooks in packaging/hooks/.

Our hooks run PyInstaller's own hook for a package (upstream_hook), keep everything it decides,
and drop only what is listed here. Every entry was checked against the modules a real worker run
loads (model load, one drawing, one question; packaging/README.md, "Checking the trim list"), and
the frozen `--self-test` runs after each build.

What cannot go: the engine builds its model under `with torch.device("meta")`, and torch then
imports torch._dynamo on the first parameter initialisation, and with it sympy, parts of
torch._inductor, torch.distributed, torch.onnx and torch.testing._internal.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

# Subpackages and modules of torch that inference in the worker never imports.
UNUSED_TORCH_MODULES = (
    "torch.utils.benchmark",
    "torch.utils.bottleneck",
    "torch.utils.hipify",
    "torch.utils.tensorboard",
    "torch.testing._internal.opinfo",
    "torch.testing._internal.optests",
    "torch.testing._internal.test_module",
    "torch.testing._internal.codegen",
    "torch.testing._internal.generated",
    "torch.testing._internal.data",
    "torch.testing._internal.common_methods_invocations",
    "torch.testing._internal.common_utils",
    "torch.testing._internal.common_modules",
    "torch.testing._internal.common_nn",
    "torch.testing._internal.common_quantization",
)

# Packages no code path of the app imports: development tools; the other Qt bindings qasync
# probes for; the Hub client's native transfer library (the app never downloads); QtNetwork
# (PySide6 imports it only on Windows to preload OpenSSL, and tolerates its absence).
UNUSED_PACKAGES = (
    "tkinter", "_tkinter", "tensorboard", "IPython", "matplotlib", "pandas", "scipy",
    "pytest", "_pytest", "pytestqt", "hypothesis", "ruff", "pip", "setuptools", "pkg_resources",
    "PyQt5", "PyQt6", "PySide2", "hf_xet", "PySide6.QtNetwork",
)

# Data folders of torch: C++ test binaries (torch/test, ~80 MB), headers and CMake files for
# building extensions (torch/include, torch/share).
UNUSED_TORCH_DATA_DIRS = ("torch/test", "torch/include", "torch/share")
# torch/bin holds C++ test programs and protoc (~50 MB) and one program torch needs: `import torch`
# fails unless torch_shm_manager (shared-memory tensors between processes) is there.
TORCH_BIN_DIR, TORCH_BIN_NEEDED = "torch/bin", ("torch_shm_manager",)

# Test-only shared libraries in torch/lib (file name prefixes).
TORCH_TEST_LIBRARIES = ("libjitbackend_test.", "libtorchbind_test.", "libbackend_with_compiler.",
                        "libaoti_custom_ops.")

# Qt plugins (folder/file-name prefix) for embedded and kiosk displays, evdev input, and the GTK3
# platform theme: the app draws its own theme (Fusion), and the GTK3 plugin would load the
# system's GTK against the glib/cairo copies in the bundle.
UNUSED_QT_PLUGINS = (
    "platformthemes/libqgtk3", "platforms/libqeglfs", "platforms/libqlinuxfb",
    "platforms/libqminimalegl", "platforms/libqvnc", "platforms/libqvkkhrdisplay",
    "egldeviceintegrations/", "generic/",
)

# Qt's own translations: the app installs no QTranslator, so they are never loaded.
UNUSED_QT_DATA_DIRS = ("PySide6/Qt/translations",)


def is_listed(name: str, prefixes) -> bool:
    """`name` is one of `prefixes` or inside one of them (dotted or slashed)."""
    name = name.replace(os.sep, "/")
    return any(name == p or name.startswith(p + ".") or name.startswith(p + "/") for p in prefixes)


def is_unused_torch_data(src: str, dest_dir: str) -> bool:
    if is_listed(dest_dir, UNUSED_TORCH_DATA_DIRS):
        return True
    return (dest_dir.replace(os.sep, "/").startswith(TORCH_BIN_DIR)
            and Path(src).name not in TORCH_BIN_NEEDED)


def is_unused_qt_plugin(src: str, dest_dir: str) -> bool:
    if "/plugins/" not in "/" + dest_dir.replace(os.sep, "/") + "/":
        return False
    key = f"{Path(dest_dir).name}/{Path(src).name}"
    return any(key.startswith(prefix) for prefix in UNUSED_QT_PLUGINS)


def upstream_hook(module: str) -> dict:
    """Run the hook PyInstaller would use for `module` without ours (pyinstaller-hooks-contrib
    first, then PyInstaller's built-in hooks, as PyInstaller ranks them); its global names."""
    import _pyinstaller_hooks_contrib
    import PyInstaller

    builtin = Path(PyInstaller.__file__).parent / "hooks"
    for folder in [*_pyinstaller_hooks_contrib.get_hook_dirs(), str(builtin)]:
        path = Path(folder) / f"hook-{module}.py"
        if path.is_file():
            return runpy.run_path(str(path))
    raise SystemExit(f"packaging: no upstream PyInstaller hook for {module} to build on; install "
                     "the packaging tools: pip install -e '.[packaging]'")
