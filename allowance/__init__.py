"""Payment engine for Shanghai's elderly comprehensive allowance (沪府规〔2024〕1号)."""

import os
import sys

__version__ = "0.1.0"

# Memory, not money. Polars' allocator (jemalloc) keeps a freed page "dirty" for 0.5 s, then
# "muzzy" (lazily freed: still counted in RSS) for a second more. Purged at once instead, the
# peaks at 15.35M were 70-240 MB lower in 12 A/B pairs (drafts, publication, supplement) and the
# times unchanged: the margin under issue 3's 3 GiB. Keeping pages dirty longer was faster but
# went over 3 GiB (docs/performance.md). It must be set before polars loads: the CLI, the jobs
# and the bench import the engine first. An operator's own _RJEM_MALLOC_CONF is left as it is.
os.environ.setdefault("_RJEM_MALLOC_CONF", "muzzy_decay_ms:0")


def _interrupted_quietly(kind: type[BaseException], value: BaseException, tb: object) -> None:
    """A Ctrl-C that reaches the top is one line, not a traceback. Commands in progress end that
    way already (Typer's "Aborted!"), but one pressed while the engine's libraries load (a second
    or so) printed 30 lines of import machinery (an audit). Set here, in the first module every
    entry point imports. The exit status is still that of SIGINT (130 in a shell)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write("\nAborted!\n")
    else:
        _excepthook(kind, value, tb)  # type: ignore[arg-type]


_excepthook = sys.excepthook
sys.excepthook = _interrupted_quietly
