"""Tag schemes of token-classification label sets: which scheme a label set uses, or why it cannot be scored.

Entity metrics need to know where entities start and end, and that depends on the tag scheme. The scheme is
read from the label set alone, from the prefixes of its tags (`B-PER`: prefix `B`, type `PER`; a bare `B`
is a prefix without a type); `O` is outside every entity:

| scheme | prefixes | entity of one word / of three words |
| --- | --- | --- |
| IOB2 | B, I | `B` / `B I I` |
| IOB1 | B, I | `I` / `I I I` (`B` only starts an entity right after one of the same type) |
| IOE2 | I, E | `E` / `I I E` |
| IOE1 | I, E | `I` / `I I I` (`E` only ends an entity right before one of the same type) |
| IOBES | B, I, E, S | `S` / `B I E` |
| BILOU | B, I, L, U | `U` / `B I L` |

IOB1 and IOB2 use the same tags, as do IOE1 and IOE2: a label set is read as IOB1 (IOE1) when some type has
an `I-` tag but no `B-` (`E-`) tag, which only IOB1 (IOE1) allows, and as IOB2 (IOE2) otherwise. A label set
without any prefixed tag (POS tags, say) has no entities. Anything else (prefixes of two schemes, tags that
are neither `O` nor prefixed next to prefixed ones, suffix-style `PER-B`) is refused: no scheme would score it
correctly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OUTSIDE = "O"
IOB1, IOB2, IOE1, IOE2, IOBES, BILOU = "IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU"
TAG_SCHEMES = (IOB1, IOB2, IOE1, IOE2, IOBES, BILOU)

# prefix sets (outside tags aside) a label set of each scheme may have: all of the scheme's prefixes, or a
# subset that still encodes entities unambiguously (no `S-` when no entity is a single word, ...), as in
# seqeval's `auto_detect`
_IOBES_SETS = [set(s) for s in ("BIES", "BIE", "BES", "BE", "S")]
_BILOU_SETS = [set(s) for s in ("BILU", "BIL", "BLU", "BL", "U")]

_PREFIXED = re.compile(r"^([BIESLU])(?:-(.+))?$")
# tags that look meant as entity tags but that no scheme here reads: lower-case or suffix-style prefixes
_ENTITY_LIKE = re.compile(r"^[BIESLU]-.|.-[BIESLU]$", re.IGNORECASE)

SUPPORTED_SCHEMES_TEXT = (
    "IOB1/IOB2 (B-, I-), IOE1/IOE2 (I-, E-), IOBES (B-, I-, E-, S-) or BILOU (B-, I-, L-, U-) tags, with `O` "
    "outside entities; a label set with no prefixed tag at all (POS tags, say) is scored by word accuracy only"
)


def split_tag(tag: str) -> tuple[str, str] | None:
    """`(prefix, type)` of an entity tag (`"B-PER"` -> `("B", "PER")`, `"B"` -> `("B", "")`), else None."""
    match = _PREFIXED.match(tag)
    return (match.group(1), match.group(2) or "") if match else None


def detect_tag_scheme(labels: Iterable[str], task_name: str | None = None) -> str | None:
    """The tag scheme of a label set (one of `TAG_SCHEMES`), or None for a label set without entities.

    Raises:
        ValueError: naming the task and the tags, when no supported scheme scores the label set correctly.
    """
    labels = list(labels)
    types: dict[str, set[str]] = {}  # entity type -> its prefixes
    unprefixed = []
    for label in labels:
        parts = split_tag(label)
        if parts is None:
            if label != OUTSIDE:
                unprefixed.append(label)
        else:
            types.setdefault(parts[1], set()).add(parts[0])

    def refuse(reason: str) -> ValueError:
        where = f"Task {task_name!r}" if task_name else "Token classification"
        return ValueError(
            f"{where}: cannot score the tags {labels} as entities: {reason}. Supported: {SUPPORTED_SCHEMES_TEXT}."
        )

    if not types:
        odd = [label for label in unprefixed if _ENTITY_LIKE.search(label)]
        if odd:
            raise refuse(f"{odd} look like entity tags but have no upper-case B-/I-/E-/S-/L-/U- prefix")
        return None
    if unprefixed:
        raise refuse(f"{unprefixed} are neither `{OUTSIDE}` nor prefixed entity tags")
    prefixes = set().union(*types.values())
    if prefixes <= {"B", "I"}:
        return IOB1 if any("I" in p and "B" not in p for p in types.values()) else IOB2
    if prefixes <= {"I", "E"}:
        return IOE1 if any("I" in p and "E" not in p for p in types.values()) else IOE2
    if prefixes in _IOBES_SETS:
        return IOBES
    if prefixes in _BILOU_SETS:
        return BILOU
    raise refuse(f"the prefixes {sorted(prefixes)} do not form one of the schemes")


__all__ = ["TAG_SCHEMES", "detect_tag_scheme", "split_tag"]
