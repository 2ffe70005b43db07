"""Payment engine for Shanghai's elderly comprehensive allowance (沪府规〔2024〕1号)."""

__version__ = "0.1.0"
