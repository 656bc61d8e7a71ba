"""PyInstaller hook for torch: the upstream hook (pyinstaller-hooks-contrib) minus what inference
never loads: test and build-tool data, test libraries, test and benchmark modules
(packaging/bundle_trim.py lists them and says why).

Hooks in the spec's `hookspath` outrank contrib's, so this one runs instead; it runs contrib's
hook first, keeping its CUDA and MKL library discovery and its future fixes, then filters what
that returns. It keeps upstream's "pyz+py" collection (torch's .py files next to the bytecode):
torch's config modules read their own source when imported (torch.utils._config_module), and
without the files `import torch.distributed` fails half-way and the worker aborts.
"""

from bundle_trim import (
    TORCH_TEST_LIBRARIES,
    UNUSED_TORCH_MODULES,
    is_listed,
    is_unused_torch_data,
    upstream_hook,
)

_upstream = upstream_hook("torch")
datas = [(src, dest) for src, dest in _upstream.get("datas", [])
         if not is_unused_torch_data(src, dest)]
binaries = [(src, dest) for src, dest in _upstream.get("binaries", [])
            if not src.replace("\\", "/").rsplit("/", 1)[-1].startswith(TORCH_TEST_LIBRARIES)]
hiddenimports = [name for name in _upstream.get("hiddenimports", [])
                 if not is_listed(name, UNUSED_TORCH_MODULES)]
excludedimports = list(UNUSED_TORCH_MODULES)
module_collection_mode = _upstream.get("module_collection_mode", "pyz+py")
warn_on_missing_hiddenimports = False
if "bindepend_symlink_suppression" in _upstream:
    bindepend_symlink_suppression = _upstream["bindepend_symlink_suppression"]
