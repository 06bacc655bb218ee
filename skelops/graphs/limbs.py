"""Limb lists of heatmap rendering (PoseC3D): which joint pairs are drawn as limb Gaussians,
and how a horizontal flip permutes them.

The COCO-17 lists are pyskl's (kennymckormick/pyskl): ``GeneratePoseTarget``'s default
``skeletons`` and the reordered list of the PoseC3D limb configs
(``configs/posec3d/*/limb.py``). Both cover the same 17 bones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .layouts import Layout, get_layout

__all__ = ["COCO_LIMBS", "COCO_LIMBS_POSEC3D", "limb_flip_permutation"]

# GeneratePoseTarget's default (pyskl/datasets/pipelines/heatmap_related.py).
COCO_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
    (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
)  # fmt: skip
# The order of the PoseC3D limb configs' ``skeletons`` (the channel order of their checkpoints).
COCO_LIMBS_POSEC3D: tuple[tuple[int, int], ...] = (
    (0, 5), (0, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (11, 13), (13, 15), (6, 12),
    (12, 14), (14, 16), (0, 1), (0, 2), (1, 3), (2, 4), (11, 12),
)  # fmt: skip


def limb_flip_permutation(
    limbs: Iterable[Sequence[int]], layout: str | Layout = "coco"
) -> tuple[int, ...]:
    """Channel permutation of limb maps under a horizontal flip: ``flipped = maps[:, perm]``.

    Limb ``i`` maps to the limb joining the mirrored joints (``layout.flip_pairs``), in either
    direction; a limb mirrored onto itself (e.g. the hips) stays. Raises ValueError when a
    mirrored limb is not in the list.
    """
    pairs = [tuple(int(j) for j in limb) for limb in limbs]
    mirror = get_layout(layout).flip_permutation
    where = {frozenset(p): i for i, p in enumerate(pairs)}
    perm = []
    for a, b in pairs:
        if max(a, b) >= len(mirror) or min(a, b) < 0:
            raise ValueError(
                f"limb ({a}, {b}) is out of range for layout with {len(mirror)} joints"
            )
        image = frozenset((mirror[a], mirror[b]))
        if image not in where:
            raise ValueError(f"the mirror image {sorted(image)} of limb ({a}, {b}) is not a limb")
        perm.append(where[image])
    return tuple(perm)
