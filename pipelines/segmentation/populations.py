"""Which published populations a reader can combine: equal sets and exact linear identities.

Every published count is the number of patients of some *population* (an indicator's
denominator or numerator, all registered patients, the patients whose postcode ended in one
match method ...) within some *cell* (a breakdown group, a practice, the whole ICS). A
reader who holds every table can combine populations as well as cells: two indicators with
the same denominator publish the same counts twice; all registered patients of a practice
(deprivation quality) minus its adults (an adult indicator's denominator) is its children
(a CYP indicator's denominator); each vintage's match methods add up to the practice's
patients. Such an identity holds in every cell because it holds for every patient.

`population_identities` finds all of them from the patients themselves: a population is a
column of 0/1 memberships, and every integer vector c with sum_p c_p * member_p = 0 for
every patient is an identity sum_p c_p * count_p(cell) = 0 in every cell. The vectors form
the null space of the (distinct membership patterns x populations) matrix; a basis of it
spans every identity a reader could use, whatever they know of the definitions (assuming
they know all of them is the safe side). Identical populations are returned apart, as
classes, so that their counts become one variable.
"""

from __future__ import annotations

from fractions import Fraction

import polars as pl

__all__ = ["membership_patterns", "population_identities"]


def membership_patterns(memberships: pl.LazyFrame | pl.DataFrame, populations: list[str]) -> "np.ndarray":  # noqa: F821
    """Return the distinct membership patterns as a 0/1 matrix (pattern x population).

    Arguments:
        memberships: (`patient_id`, `population`) rows, one per patient and population they belong to.
        populations: the population names, in column order.

    Examples:
        >>> m = pl.DataFrame({"patient_id": ["a", "a", "b", "c"], "population": ["all", "adult", "all", "all"]})
        >>> membership_patterns(m, ["all", "adult"]).tolist()
        [[1, 0], [1, 1]]
    """
    import numpy as np

    position = {p: i for i, p in enumerate(populations)}
    frame = memberships.lazy().select("patient_id", pl.col("population").replace_strict(position, return_dtype=pl.Int64).alias("i"))
    # 62 populations per word keeps every word a positive Int64.
    words = max(1, -(-len(populations) // 62))
    bits = (
        frame.with_columns((pl.col("i") // 62).alias("w"), pl.lit(2, pl.Int64).pow(pl.col("i") % 62).cast(pl.Int64).alias("bit"))
        .group_by("patient_id", "w").agg(pl.col("bit").sum())
        .collect()
        .pivot(on="w", index="patient_id", values="bit")
    )
    columns = [str(w) for w in range(words)]
    bits = bits.with_columns([pl.lit(0, pl.Int64).alias(c) for c in columns if c not in bits.columns])
    distinct = bits.select([pl.col(c).fill_null(0) for c in columns]).unique().sort(columns).to_numpy()
    matrix = np.zeros((distinct.shape[0], len(populations)), dtype=np.int64)
    for i in range(len(populations)):
        matrix[:, i] = (distinct[:, i // 62] >> (i % 62)) & 1
    return matrix


def _null_space(matrix) -> list[list[int]]:
    """Return an integer basis of {c : matrix @ c = 0} (exact arithmetic on an independent row set)."""
    import numpy as np
    from scipy.linalg import qr

    n = matrix.shape[1]
    if matrix.shape[0] == 0:
        return [[int(i == j) for j in range(n)] for i in range(n)]
    # Rows that span the row space (pivoted QR on the transpose picks independent rows), so
    # the exact elimination below works on at most n rows whatever the number of patterns.
    _, r, pivots = qr(matrix.T.astype(float), pivoting=True, mode="economic")
    diagonal = np.abs(np.diag(r))
    rank = int((diagonal > 1e-9 * max(1.0, diagonal.max(initial=0.0))).sum())
    rows = [[Fraction(int(v)) for v in matrix[p]] for p in sorted(pivots[:rank].tolist())]
    pivot_columns: list[int] = []
    reduced: list[list[Fraction]] = []
    for row in rows:
        row = row[:]
        for pc, pr in zip(pivot_columns, reduced):
            if row[pc] != 0:
                factor = row[pc]
                row = [a - factor * b for a, b in zip(row, pr)]
        lead = next((j for j, v in enumerate(row) if v != 0), None)
        if lead is None:
            continue
        row = [v / row[lead] for v in row]
        for k, pr in enumerate(reduced):
            if pr[lead] != 0:
                factor = pr[lead]
                reduced[k] = [a - factor * b for a, b in zip(pr, row)]
        pivot_columns.append(lead)
        reduced.append(row)
    free = [j for j in range(n) if j not in pivot_columns]
    basis = []
    for f in free:
        vector = [Fraction(0)] * n
        vector[f] = Fraction(1)
        for pc, pr in zip(pivot_columns, reduced):
            vector[pc] = -pr[f]
        scale = 1
        for v in vector:
            scale = scale * v.denominator // _gcd(scale, v.denominator)
        basis.append([int(v * scale) for v in vector])
    if basis:
        check = matrix @ np.array(basis, dtype=np.int64).T
        if np.abs(check).max() != 0:
            raise RuntimeError("population identities: the exact null space does not annihilate every pattern")
    return basis


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def population_identities(matrix, populations: list[str]) -> tuple[dict[str, str], list[dict[str, int]]]:
    """Return (class of each population, identities among the classes).

    Arguments:
        matrix: `membership_patterns` output.
        populations: its column names.

    Returns:
        `classes`: population -> the first (in the given order) population with exactly the
        same members; empty populations map to themselves and take part in no identity.
        `identities`: each a {class: integer coefficient} with sum(coef * count) = 0 in every cell.

    Examples:
        >>> import numpy as np
        >>> m = np.array([[1, 1, 0, 1], [1, 0, 1, 0]])  # all = adults + children; 'den' = adults
        >>> population_identities(m, ["all", "adults", "children", "den"])
        ({'all': 'all', 'adults': 'adults', 'children': 'children', 'den': 'adults'}, [{'all': 1, 'adults': -1, 'children': -1}])
    """
    import numpy as np

    classes: dict[str, str] = {}
    first_of: dict[bytes, str] = {}
    kept = []
    for i, name in enumerate(populations):
        column = np.ascontiguousarray(matrix[:, i]).tobytes()
        if not matrix[:, i].any():
            classes[name] = name
            continue
        if column in first_of:
            classes[name] = first_of[column]
            continue
        first_of[column] = name
        classes[name] = name
        kept.append(i)
    if not kept:
        return classes, []
    basis = _null_space(matrix[:, kept])
    identities = []
    for vector in basis:
        identity = {populations[kept[j]]: c for j, c in enumerate(vector) if c != 0}
        if len(identity) > 1:
            # Normalise the sign: the first population positive (a total minus its parts).
            first = next(iter(identity.values()))
            if first < 0:
                identity = {k: -v for k, v in identity.items()}
            identities.append(identity)
    return classes, identities
