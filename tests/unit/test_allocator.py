"""The engine's allocator setting reaches polars' jemalloc (allowance/__init__.py)."""

import os
import subprocess
import sys


def _opts(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stderr


def test_importing_the_engine_first_purges_freed_pages_at_once() -> None:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    # stats_print makes jemalloc list its options at exit, as it read them when polars loaded.
    code = ("import os, allowance; os.environ['_RJEM_MALLOC_CONF'] += ',stats_print:true'; "
            "import polars as pl; pl.DataFrame({'a': [1, 2]}).sum()")
    assert "opt.muzzy_decay_ms: 0 " in _opts(code, env)


def test_every_job_gets_it_whatever_its_own_imports() -> None:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    # pipelines.demo imports polars before the engine; the package imports the engine first.
    code = ("import os, pipelines; os.environ['_RJEM_MALLOC_CONF'] += ',stats_print:true'; "
            "import pipelines.demo, polars as pl; pl.DataFrame({'a': [1, 2]}).sum()")
    assert "opt.muzzy_decay_ms: 0 " in _opts(code, env)


def test_an_operators_own_setting_is_kept() -> None:
    env = {**os.environ, "_RJEM_MALLOC_CONF": "muzzy_decay_ms:250,stats_print:true"}
    assert "opt.muzzy_decay_ms: 250 " in _opts("import allowance, polars as pl; pl.DataFrame({'a': [1]}).sum()", env)
