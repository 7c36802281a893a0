"""Splits by whole units: train, valid (in-domain, ~5 % of each pool) and dev_stranger (never heard in training).

A unit is what must never straddle two splits: a scene, a voice, a prompt group, a block of sentences, a noise
recording (all its segments). Pure functions of small records; deterministic (sha1 ranks, sorted inputs).

* dev_stranger: every unit that holds a language of :data:`STRANGER_LANGUAGES`, a voice of
  :data:`STRANGER_SPEAKERS`, a package of :data:`STRANGER_PACKAGES` or a recording of :data:`STRANGER_UNITS`,
  closed over shared languages and speakers (a unit that shares a stranger language or voice is a stranger too),
  so that no training split holds any of them.
* valid: in each pool (a package, or a tuxpaint language), units are ranked by ``sha1("fuse-corpus-v2:<pool>:<unit>")``
  and taken in that order until they hold :data:`VALID_FRACTION` of the pool's duration (at most 1.5 times that,
  never every unit of the pool).
* train: the rest.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

SPLITS = ("train", "valid", "dev_stranger")
SALT = "fuse-corpus-v2"
VALID_FRACTION = 0.05

# The stranger dev split, chosen once by hand and fixed here (models are chosen only on it):
# - ro and be: two tuxpaint languages (be wideband, ro ~11-13 kHz sources); ro takes the ktuberling ro words along.
# - it: the asterisk Italian voice (asterisk-core-sounds-it-g722, male, wideband G.722); Italian as a whole goes
#   with it, so the narrowband Italian prompts (menardi, female) and ktuberling's Italian words are strangers too.
STRANGER_LANGUAGES = ("be", "it", "ro")
# - one English voice pack of hedgewars: the only wideband English voices are hedgewars packs.
STRANGER_SPEAKERS = ("hedgewars-British",)
# - noise packages heard nowhere in training: city sounds (traffic, crowds, industry) and keyboard typing.
STRANGER_PACKAGES = ("lincity-ng-data", "bucklespring-data")
# - single noise recordings (package, unit pattern): restaurant babble and music-like loops, the two noise kinds on
#   which fuse-small v1 did worse than the noisy input.
STRANGER_UNITS = (
    ("supertuxkart-data", "*lenautile_restaurant*"),
    ("sonic-pi-samples", "*loop_amen_full*"),
    ("sonic-pi-samples", "*loop_garzul*"),
    ("sonic-pi-samples", "*loop_safari*"),
    ("sonic-pi-samples", "*ambi_piano*"),
)


@dataclass(frozen=True)
class Item:
    """What the split needs to know of one output file."""

    package: str
    pool: str
    unit: str
    language: str
    speaker: str
    seconds: float

    @property
    def unit_id(self) -> tuple[str, str]:
        return (self.pool, self.unit)


def unit_rank(pool: str, unit: str, salt: str = SALT) -> str:
    """The deterministic rank of a unit inside its pool (hex sha1)."""
    return hashlib.sha1(f"{salt}:{pool}:{unit}".encode()).hexdigest()


def is_stranger_seed(item: Item) -> bool:
    """True when the item itself names a stranger language, voice, package or recording."""
    return (
        item.language in STRANGER_LANGUAGES
        or item.speaker in STRANGER_SPEAKERS
        or item.package in STRANGER_PACKAGES
        or any(item.package == p and fnmatch.fnmatchcase(item.unit, u) for p, u in STRANGER_UNITS)
    )


def stranger_units(items: Iterable[Item]) -> set[tuple[str, str]]:
    """Units of the stranger split: seeded by :func:`is_stranger_seed`, closed over shared languages and speakers.

    The closure only follows speech labels (noise has none) and never a language through a voice: a stranger
    voice in a training language (an English hedgewars pack) does not make that language a stranger.
    """
    items = list(items)
    by_unit: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for item in items:
        by_unit[item.unit_id].append(item)
    chosen = {item.unit_id for item in items if is_stranger_seed(item)}
    languages = {i.language for i in items if i.language in STRANGER_LANGUAGES}
    while True:
        speakers = {i.speaker for u in chosen for i in by_unit[u] if i.speaker}
        grown = {
            unit
            for unit, members in by_unit.items()
            if unit not in chosen and any(i.speaker in speakers or i.language in languages for i in members)
        }
        if not grown:
            return chosen
        chosen |= grown


def choose_valid(pool: str, units: dict[str, float], fraction: float = VALID_FRACTION) -> set[str]:
    """Units of one pool held out as valid: sha1 order, until `fraction` of the duration (at most 1.5 times it).

    Args:
        pool: the pool's name (part of the rank).
        units: `{unit: seconds}`.
    Returns:
        The valid units; never all of them, and at least one when the pool has two or more.
    """
    total = sum(units.values())
    target, cap = fraction * total, 1.5 * fraction * total
    order = sorted(units, key=lambda u: (unit_rank(pool, u), u))
    chosen: set[str] = set()
    held = 0.0
    for unit in order:
        if held >= target:
            break
        if held + units[unit] <= cap and len(chosen) < len(units) - 1:
            chosen.add(unit)
            held += units[unit]
    if not chosen and len(units) > 1:
        chosen.add(order[0])
    return chosen


def assign_splits(items: Iterable[Item]) -> dict[tuple[str, str], str]:
    """`{(pool, unit): split}` for every unit of `items` (split in :data:`SPLITS`)."""
    items = list(items)
    stranger = stranger_units(items)
    pools: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for item in items:
        if item.unit_id not in stranger:
            pools[item.pool][item.unit] += item.seconds
    splits = {unit: "dev_stranger" for unit in stranger}
    for pool in sorted(pools):
        valid = choose_valid(pool, dict(pools[pool]))
        for unit in pools[pool]:
            splits[(pool, unit)] = "valid" if unit in valid else "train"
    return splits


def check_disjoint(items: Iterable[Item], splits: dict[tuple[str, str], str]) -> None:
    """Raises ValueError if a stranger unit, voice or stranger language also occurs in train or valid."""
    seen: dict[str, dict[str, set[str]]] = {s: defaultdict(set) for s in SPLITS}
    for item in items:
        split = splits[item.unit_id]
        seen[split]["unit"].add("/".join(item.unit_id))
        if item.speaker:
            seen[split]["speaker"].add(item.speaker)
        if item.language in STRANGER_LANGUAGES:
            seen[split]["language"].add(item.language)
    for field in ("unit", "speaker", "language"):
        shared = seen["dev_stranger"][field] & (seen["train"][field] | seen["valid"][field])
        if shared:
            raise ValueError(f"dev_stranger shares {field}s with training splits: {sorted(shared)[:5]}")
