"""The jobs schedulers and staff run: all the wiring (which extract, ledger, output folder).

The engine is imported here, before any job module imports polars: its allocator setting
(allowance/__init__.py) must be in the environment when polars loads, whatever order a job's
own imports take (`pipelines.demo` imports polars before the engine).
"""

import allowance  # noqa: F401
