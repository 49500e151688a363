"""``python -m edgekd`` (also how ``torchrun -m edgekd train ...`` launches multi-GPU training)."""

from edgekd.cli import run

run()
