"""`make bench`: wall time and peak RSS of the engine's steps at 1M, 5M and 15.35M residents."""
