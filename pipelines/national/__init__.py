"""The national mode: every ICB's month as its own partition, rolled up to region and England.

The single-ICS mode (one extract, one DuckDB warehouse) stays the default. Here each ICB x
month partition runs that same month pipeline on its own ICB's extract inside a private
scratch warehouse and leaves its results as Parquet files in a dataset laid out by ICB and
month (`store.py`); the national roll-up then reads only the partitions' private aggregate
counts (`rollup.py`), never patient rows and never already-rounded published counts.
"""
