"""The stages a user runs, each a plain function over typed results: train, distill, compress, bench.

This floor orchestrates the ones below it (``learn``, ``structure``, ``compile``, ``device``, ``data``);
:mod:`edgekd.api` re-exports it and the CLI calls only the API."""
