"""The tools a user would pick instead of ours, installed for the benchmarks only.

``require("torchattacks")`` / ``require("zennit")`` install the pinned wheel with
``pip install --no-deps --target benchmarks/.site`` the first time (never as a dependency of the
package, never with torchvision) and put that folder on ``sys.path``. Both import torchvision at
the top level for things the benchmarks do not use; a stand-in module with only the names they
touch at import time is registered when the real torchvision is absent.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

SITE = Path(__file__).resolve().parent / ".site"
PINNED = {"torchattacks": "torchattacks==3.5.1", "zennit": "zennit==0.5.1"}


def _torchvision_stand_in() -> None:
    """Register a minimal ``torchvision`` so zennit's torchvision canonizers can be defined."""
    if importlib.util.find_spec("torchvision") is not None or "torchvision" in sys.modules:
        return

    class _Block:  # zennit only subclasses/isinstance-checks these names
        pass

    resnet = types.ModuleType("torchvision.models.resnet")
    resnet.BasicBlock = type("BasicBlock", (_Block,), {})
    resnet.Bottleneck = type("Bottleneck", (_Block,), {})
    models = types.ModuleType("torchvision.models")
    models.resnet = resnet
    vision = types.ModuleType("torchvision")
    vision.models = models
    vision.__path__ = []  # a package, so submodule imports resolve to the entries below
    sys.modules.update({"torchvision": vision, "torchvision.models": models,
                        "torchvision.models.resnet": resnet})


def require(name: str):
    """Import the benchmark-only package ``name``, installing its pinned wheel without deps."""
    if str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))
    if name == "zennit":
        _torchvision_stand_in()
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(SITE), PINNED[name]], check=True)
    importlib.invalidate_caches()
    return importlib.import_module(name)
