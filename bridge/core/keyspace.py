"""Finds the other PANDA datasets whose rows can share a Solr key with this dataset's rows (pure).

PANDA keys every row `<slug>-<external_id>` in one Solr index shared by all datasets (contract 7): row
`b-c` of dataset `a` and row `c` of dataset `a-b` are one Solr document, and writing either one moves it
to the other dataset. So, for this dataset's slug S and another slug T:

    T = S + "-" + X   this dataset's ids that start with `X-` are rows of T. Collision-free when every id
                      this bridge makes starts with an `[mapping] external_id_prefix` that rules `X-` out
                      (the prefix neither starts with `X-` nor is the start of it), e.g. `r_`.
    S = T + "-" + Y   every row of this dataset can be row `Y-<id>` of T, whatever this bridge does: T's
                      ids are not this bridge's to choose. Only another slug avoids it.
    anything else     the keys cannot meet.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["key_clashes"]


def _may_start_with(prefix: str, text: str) -> bool:
    """True when an id made with `prefix` can start with `text` (encoded ids never start with '-')."""
    if len(text) <= len(prefix):
        return prefix.startswith(text)
    return text.startswith(prefix) and not text[len(prefix):].startswith("-")


def key_clashes(slug: str, others: Iterable[str], id_prefix: str = "") -> list[str]:
    """One sentence for each other slug whose rows can share Solr keys with this dataset's rows, in order.

    `id_prefix` is the text every external_id of this dataset starts with ("" when none is configured).
    """
    found = []
    for other in sorted(set(others)):
        if other == slug:
            continue
        if other.startswith(slug + "-"):
            rest = other[len(slug) + 1:]
            if _may_start_with(id_prefix, rest + "-"):
                found.append(
                    f"dataset {other!r}: this dataset's row {rest}-<id> is the same PANDA (Solr) row as "
                    f"{other!r}'s row <id>, so writing one overwrites the other; set [mapping] "
                    f"external_id_prefix to text that does not start {rest + '-'!r}, such as 'r_' "
                    "(then run `bridge checkpoint reset` if rows were already sent), or use another slug"
                )
        elif slug.startswith(other + "-"):
            rest = slug[len(other) + 1:]
            found.append(
                f"dataset {other!r}: each row <id> of this dataset is the same PANDA (Solr) row as {other!r}'s "
                f"row {rest}-<id>, and no setting of this bridge can prevent it; use a slug that is not "
                f"{other + '-'!r} followed by anything (e.g. {other + '_' + rest!r})"
            )
    return found
