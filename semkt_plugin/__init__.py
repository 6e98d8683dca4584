"""semkt: Semantic Knowledge Transfer for existing multi-exposure HDR reconstruction models.

    skt = wrap(model, adapter="ahdr")
    loss = their_loss(out, gt) + skt.loss(out, gt)
    model = skt.unwrap()
"""
__version__ = "0.1.0"

from .adapter import Adapter, HookPoint
from .check import check_adapter
from .config import Config
from .hookspecs import hookimpl
from .plugin import Strategy, wrap
from .strategies.skt import SemanticTransfer

__all__ = ["__version__", "Adapter", "Config", "HookPoint", "SemanticTransfer", "Strategy", "check_adapter", "hookimpl", "wrap"]
