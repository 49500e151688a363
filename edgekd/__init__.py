"""edgekd: learn a compact CNN by distillation under per-block budgets, compile it with TVM,
and measure it on the edge board.

The stable Python API lives in :mod:`edgekd.api`; the CLI (``edgekd``) is a thin layer over it.
"""

__version__ = "0.1.0"
