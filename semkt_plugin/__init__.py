"""semkt: Semantic Knowledge Transfer for existing multi-exposure HDR reconstruction models.

    skt = wrap(model, adapter="ahdr", total_steps=epochs * len(loader))
    loss = their_loss(out, gt) + skt.loss(out, gt)
    model = skt.unwrap()
"""
__version__ = "0.1.0"

from .adapter import Adapter, HookPoint
from .diagnostics.check import check_adapter
from .hookspecs import hookimpl
from .settings import Settings
from .strategies.base import Strategy
from .strategies.skt import SemanticTransfer, SKTConfig
from .wrapping import unwrap, wrap

__all__ = ["__version__", "Adapter", "HookPoint", "SKTConfig", "SemanticTransfer", "Settings", "Strategy",
           "check_adapter", "hookimpl", "unwrap", "wrap"]
