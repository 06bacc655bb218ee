"""NTU RGB+D class names and the official zero-shot seen/unseen splits.

Class names are the action titles A1-A120 of the dataset's official list
(shahroudy/NTURGB-D, ``README.md``, "Action Classes", commit ac2ebc8, 2022), verbatim including
its wording ("wear on glasses", "hush (quite)") with the trailing full stops dropped and the two
typographic apostrophes (A109, A117) written as ``'``. Index ``i`` is action ``A{i + 1}``:
indices here are 0-based, as the labels of every skelops model. NTU RGB+D 60 is A1-A60
(Shahroudy et al., CVPR 2016), NTU RGB+D 120 is A1-A120 (Liu et al., TPAMI 2020).

The zero-shot splits are SynSE's (Gupta et al., "Syntactically Guided Generative Embeddings
for Zero-Shot Skeleton Action Recognition", ICIP 2021; skelemoa/synse-zsl ``README.md``,
"Creating the test-train splits", which lists the unseen classes by their 1-based action
labels, e.g. A11 reading), which SA-DVAE (Li et al., ECCV 2024; pha123661/SA-DVAE) and most
later work evaluate on: NTU-60 55/5 and 48/12, NTU-120 110/10 and 96/24. The official
``label_splits/*.npy`` files are in a download that is no longer available; the sets below
were transcribed from that README and converted to 0-based indices.

>>> zero_shot_split("ntu60", 5).unseen
(10, 11, 19, 26, 56)
>>> [ntu_class_names("ntu60")[i] for i in zero_shot_split("ntu60", 5).unseen]
['reading', 'writing', 'put on a hat/cap', 'jump up', "touch other person's pocket"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = [
    "NTU120_CLASS_NAMES",
    "NTU60_CLASS_NAMES",
    "OFFICIAL_UNSEEN_CLASSES",
    "ZeroShotSplit",
    "make_zero_shot_split",
    "ntu_class_names",
    "zero_shot_split",
]

NTU120_CLASS_NAMES: tuple[str, ...] = (
    "drink water",
    "eat meal/snack",
    "brushing teeth",
    "brushing hair",
    "drop",
    "pickup",
    "throw",
    "sitting down",
    "standing up (from sitting position)",
    "clapping",
    "reading",
    "writing",
    "tear up paper",
    "wear jacket",
    "take off jacket",
    "wear a shoe",
    "take off a shoe",
    "wear on glasses",
    "take off glasses",
    "put on a hat/cap",
    "take off a hat/cap",
    "cheer up",
    "hand waving",
    "kicking something",
    "reach into pocket",
    "hopping (one foot jumping)",
    "jump up",
    "make a phone call/answer phone",
    "playing with phone/tablet",
    "typing on a keyboard",
    "pointing to something with finger",
    "taking a selfie",
    "check time (from watch)",
    "rub two hands together",
    "nod head/bow",
    "shake head",
    "wipe face",
    "salute",
    "put the palms together",
    "cross hands in front (say stop)",
    "sneeze/cough",
    "staggering",
    "falling",
    "touch head (headache)",
    "touch chest (stomachache/heart pain)",
    "touch back (backache)",
    "touch neck (neckache)",
    "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person",
    "kicking other person",
    "pushing other person",
    "pat on back of other person",
    "point finger at the other person",
    "hugging other person",
    "giving something to other person",
    "touch other person's pocket",
    "handshaking",
    "walking towards each other",
    "walking apart from each other",
    "put on headphone",
    "take off headphone",
    "shoot at the basket",
    "bounce ball",
    "tennis bat swing",
    "juggling table tennis balls",
    "hush (quite)",
    "flick hair",
    "thumb up",
    "thumb down",
    "make ok sign",
    "make victory sign",
    "staple book",
    "counting money",
    "cutting nails",
    "cutting paper (using scissors)",
    "snapping fingers",
    "open bottle",
    "sniff (smell)",
    "squat down",
    "toss a coin",
    "fold paper",
    "ball up paper",
    "play magic cube",
    "apply cream on face",
    "apply cream on hand back",
    "put on bag",
    "take off bag",
    "put something into a bag",
    "take something out of a bag",
    "open a box",
    "move heavy objects",
    "shake fist",
    "throw up cap/hat",
    "hands up (both hands)",
    "cross arms",
    "arm circles",
    "arm swings",
    "running on the spot",
    "butt kicks (kick backward)",
    "cross toe touch",
    "side kick",
    "yawn",
    "stretch oneself",
    "blow nose",
    "hit other person with something",
    "wield knife towards other person",
    "knock over other person (hit with body)",
    "grab other person's stuff",
    "shoot at other person with a gun",
    "step on foot",
    "high-five",
    "cheers and drink",
    "carry something with other person",
    "take a photo of other person",
    "follow other person",
    "whisper in other person's ear",
    "exchange things with other person",
    "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
)
NTU60_CLASS_NAMES: tuple[str, ...] = NTU120_CLASS_NAMES[:60]

_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "ntu60": NTU60_CLASS_NAMES,
    "ntu120": NTU120_CLASS_NAMES,
}

# 0-based unseen classes of SynSE's splits, by (dataset, number of unseen classes). The
# comments give the README's 1-based action labels, the primary source.
OFFICIAL_UNSEEN_CLASSES: dict[tuple[str, int], tuple[int, ...]] = {
    # A11, A12, A20, A27, A57
    ("ntu60", 5): (10, 11, 19, 26, 56),
    # A4, A6, A10, A13, A16, A41, A43, A48, A52, A57, A59, A60
    ("ntu60", 12): (3, 5, 9, 12, 15, 40, 42, 47, 51, 56, 58, 59),
    # A5, A14, A38, A44, A50, A66, A89, A96, A100, A107
    ("ntu120", 10): (4, 13, 37, 43, 49, 65, 88, 95, 99, 106),
    # A6, A10, A12, A17, A19, A21, A23, A30, A36, A40, A46, A50, A60, A69, A71, A82, A85,
    # A88, A94, A95, A105, A114, A115, A120
    ("ntu120", 24): (
        5,
        9,
        11,
        16,
        18,
        20,
        22,
        29,
        35,
        39,
        45,
        49,
        59,
        68,
        70,
        81,
        84,
        87,
        93,
        94,
        104,
        113,
        114,
        119,
    ),  # fmt: skip
}


def ntu_class_names(dataset: str) -> tuple[str, ...]:
    """The official action names of ``dataset`` (``"ntu60"`` or ``"ntu120"``); entry ``i`` is
    action ``A{i + 1}``."""
    if dataset not in _CLASS_NAMES:
        raise ValueError(f"dataset must be one of {sorted(_CLASS_NAMES)}, got {dataset!r}")
    return _CLASS_NAMES[dataset]


@dataclasses.dataclass(frozen=True)
class ZeroShotSplit:
    """A partition of ``num_classes`` 0-based class indices into ``seen`` classes (with
    training samples) and ``unseen`` classes (known only by their text), both sorted.

    Construction validates: indices in ``[0, num_classes)``, no duplicates, no class both seen
    and unseen, every class in one of the two, at least one of each.
    """

    num_classes: int
    seen: tuple[int, ...]
    unseen: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        for name in ("seen", "unseen"):
            values = tuple(getattr(self, name))
            bad = [c for c in values if not isinstance(c, int) or not 0 <= c < self.num_classes]
            if bad:
                raise ValueError(
                    f"{name} must hold class indices in [0, {self.num_classes}), got {bad}"
                )
            duplicates = sorted({c for c in values if values.count(c) > 1})
            if duplicates:
                raise ValueError(f"{name} must not repeat classes, got {duplicates} twice")
            if not values:
                raise ValueError(f"{name} must hold at least one class, got none")
            object.__setattr__(self, name, tuple(sorted(values)))
        overlap = sorted(set(self.seen) & set(self.unseen))
        if overlap:
            raise ValueError(f"unseen classes must not be seen, got {overlap} in both")
        missing = sorted(set(range(self.num_classes)) - set(self.seen) - set(self.unseen))
        if missing:
            raise ValueError(
                f"seen and unseen must cover all {self.num_classes} classes, missing {missing}"
            )

    def relabel_seen(self, labels: Sequence[int]) -> list[int]:
        """Class indices of seen classes -> their positions in :attr:`seen` (for a classifier
        over the seen classes only)."""
        position = {c: i for i, c in enumerate(self.seen)}
        bad = [c for c in labels if c not in position]
        if bad:
            raise ValueError(f"labels must be seen classes {self.seen}, got {sorted(set(bad))}")
        return [position[c] for c in labels]


def zero_shot_split(dataset: str, num_unseen: int) -> ZeroShotSplit:
    """SynSE's official split of ``dataset`` with ``num_unseen`` unseen classes: ``"ntu60"``
    with 5 or 12, ``"ntu120"`` with 10 or 24 (see the module docstring for the source)."""
    num_classes = len(ntu_class_names(dataset))
    key = (dataset, num_unseen)
    if key not in OFFICIAL_UNSEEN_CLASSES:
        sizes = sorted(n for d, n in OFFICIAL_UNSEEN_CLASSES if d == dataset)
        raise ValueError(f"num_unseen for {dataset!r} must be one of {sizes}, got {num_unseen!r}")
    unseen = OFFICIAL_UNSEEN_CLASSES[key]
    seen = tuple(c for c in range(num_classes) if c not in unseen)
    return ZeroShotSplit(num_classes, seen, unseen)


def make_zero_shot_split(
    classes: str | Sequence[str] | int,
    unseen: Sequence[int | str],
    seen: Sequence[int | str] | None = None,
) -> ZeroShotSplit:
    """A validated user split.

    Args:
        classes: the class universe: a dataset name (``"ntu60"``, ``"ntu120"``: its official
            names), a sequence of class names, or a class count.
        unseen: unseen classes, as 0-based indices or (where ``classes`` names them) names.
        seen: seen classes likewise; ``None`` means every class that is not unseen.

    Raises:
        ValueError: an index out of range, an unknown name, a class listed twice or in both
            sets, or (with ``seen`` given) classes left in neither set.
    """
    if isinstance(classes, str):
        names: tuple[str, ...] | None = ntu_class_names(classes)
    elif isinstance(classes, int):
        names = None
    else:
        names = tuple(classes)
        if len(set(names)) != len(names):
            raise ValueError("classes must not repeat a name")
    num_classes = classes if isinstance(classes, int) else len(names)

    def resolve(argument: str, values: Sequence[int | str]) -> tuple[int, ...]:
        indices = []
        for value in values:
            if isinstance(value, str):
                if names is None or value not in names:
                    known = "none (classes is a count)" if names is None else "the class names"
                    raise ValueError(
                        f"{argument} names unknown class {value!r}; known names: {known}"
                    )
                indices.append(names.index(value))
            else:
                indices.append(value)
        return tuple(indices)

    unseen_indices = resolve("unseen", unseen)
    if seen is None:
        seen_indices = tuple(c for c in range(num_classes) if c not in unseen_indices)
    else:
        seen_indices = resolve("seen", seen)
    return ZeroShotSplit(num_classes, seen_indices, unseen_indices)
