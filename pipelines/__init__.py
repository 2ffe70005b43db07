"""The jobs schedulers and staff run: all the wiring (which extract, ledger, output folder)."""
