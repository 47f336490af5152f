"""core20plus5: the monthly Core20PLUS5 pipeline (Dagster assets over DuckDB and polars)."""

import os

# One BLAS thread, set before anything imports numpy (OpenBLAS reads it once, at load). The
# pipeline's only BLAS work is small products (the SII's 100,000 simulated draws times a
# 2 x k matrix, once per indicator), where OpenBLAS's own threads spin and wait on each
# other: on this project's shared 2-core machine one such product took 62 ms with the
# default threads and 3 ms with one, and the demo month's SII/RII step 4.7 s against about
# 1 s. The results are identical (each element is the same dot product). An administrator
# who wants threads sets OPENBLAS_NUM_THREADS themselves; it is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
