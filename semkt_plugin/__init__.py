"""semkt: Semantic Knowledge Transfer for existing multi-exposure HDR reconstruction models."""
from .adapter import Adapter, HookPoint
from .hookspecs import hookimpl

__all__ = ["Adapter", "HookPoint", "hookimpl"]
