"""Lossless folding passes, one per module. Importing this package registers all of them."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and not _module.name.endswith("_test"):
        importlib.import_module(f"{__name__}.{_module.name}")
