"""The identities between populations: an exact integer basis of the patterns' null space.

`populations._null_space` picks independent rows in floating point and eliminates them with
integers. Checked here against a plain reduced row echelon form in exact rational arithmetic
(Fractions over every row, no row selection), which defines the expected basis: for each free
column f, the primitive integer vector with c_f > 0.
"""

from __future__ import annotations

import os
from fractions import Fraction
from math import gcd

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines.segmentation.populations import _null_space

EXAMPLES = settings(max_examples=int(os.environ.get("CORE20_HYPOTHESIS_EXAMPLES", "50")), deadline=None)


def _rref_null_space(rows: list[list[int]], n: int) -> list[list[int]]:
    matrix = [[Fraction(v) for v in row] for row in rows]
    pivots: list[int] = []
    r = 0
    for c in range(n):
        found = next((i for i in range(r, len(matrix)) if matrix[i][c] != 0), None)
        if found is None:
            continue
        matrix[r], matrix[found] = matrix[found], matrix[r]
        lead = matrix[r][c]
        matrix[r] = [v / lead for v in matrix[r]]
        for i in range(len(matrix)):
            if i != r and matrix[i][c] != 0:
                factor = matrix[i][c]
                matrix[i] = [a - factor * b for a, b in zip(matrix[i], matrix[r])]
        pivots.append(c)
        r += 1
    basis = []
    for f in (c for c in range(n) if c not in pivots):
        vector = [Fraction(0)] * n
        vector[f] = Fraction(1)
        for k, pc in enumerate(pivots):
            vector[pc] = -matrix[k][f]
        scale = 1
        for v in vector:
            scale = scale * v.denominator // gcd(scale, v.denominator)
        integers = [int(v * scale) for v in vector]
        divisor = 0
        for v in integers:
            divisor = gcd(divisor, abs(v))
        basis.append([v // divisor for v in integers])
    return basis


@EXAMPLES
@given(data=st.data(), n=st.integers(1, 9), n_rows=st.integers(1, 30))
@example(data=None, n=4, n_rows=0)
def test_null_space_is_the_exact_reduced_echelon_basis(data, n, n_rows):
    rows = [data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)) for _ in range(n_rows)] if data else []
    matrix = np.array(rows, dtype=np.int64).reshape(n_rows, n)
    got = _null_space(matrix)
    assert got == _rref_null_space(rows, n) if rows else got == [[int(i == j) for j in range(n)] for i in range(n)]
    assert len(got) == n - (np.linalg.matrix_rank(matrix) if n_rows else 0)


def test_adults_and_children_make_all():
    # Patterns: an adult (all, adults), a child (all, children).
    matrix = np.array([[1, 1, 0], [1, 0, 1]])
    assert _null_space(matrix) == [[-1, 1, 1]]
