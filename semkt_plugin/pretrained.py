"""The settings that need no download, and the error for pretrained weights (the SKB's, VGG19's) that are neither
on disk nor downloadable."""
from __future__ import annotations

from collections.abc import Sequence

OFFLINE = {"skb_weights": "standin", "perceptual": "skb"}  # FastSAM and VGG19 weights cannot be downloaded offline


class MissingWeights(FileNotFoundError):
    """Pretrained weights are not where given, not in their cache, and could not be downloaded (offline?).

    Attributes:
        problem: what is missing, where it was looked for and how to provide it.
        offline: the setting that does without them, e.g. ``skb_weights="standin"``.
    """

    def __init__(self, problem: str, offline: str) -> None:
        sep = "\n" if "\n" in problem else " "  # a list of problems gets the advice on a line of its own
        super().__init__(f"{problem}{sep}Offline, set {offline}.")
        self.problem, self.offline = problem, offline

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickled as its two parts (multiprocessing, DDP workers)
        return type(self), (self.problem, self.offline)


def missing_weights(errors: Sequence[MissingWeights]) -> MissingWeights:
    """One error for all of ``errors``: each problem, then every setting that does without them."""
    if len(errors) == 1:
        return errors[0]
    problems = "".join(f"\n  - {e.problem}" for e in errors)
    return MissingWeights(f"pretrained weights are missing:{problems}", ", ".join(e.offline for e in errors))
