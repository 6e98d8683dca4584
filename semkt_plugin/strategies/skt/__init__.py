"""Semantic Knowledge Transfer, ``strategy="skt"``: the strategy and its parts.

- :mod:`.strategy`: :class:`SemanticTransfer`, its settings :class:`SKTConfig` and its table of loss terms.
- :mod:`.teacher`: SPGRM, the semantic teacher, and its blocks.
- :mod:`.pixel_products`: the products over the pixels of the teacher's channel attention.
- :mod:`.skam`: SKAM, the feature alignment behind L_feat.
- :mod:`.losses`: L_content and L_color (the per-region soft histograms).
- :mod:`.perceptual`: φ of L_content (VGG19, or the SKB's backbone).
"""
from .strategy import SemanticTransfer, SKTConfig

__all__ = ["SKTConfig", "SemanticTransfer"]
