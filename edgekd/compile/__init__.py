"""Compile stage: a trained model + a target profile → an artifact directory for the board.

Public API: :func:`compile_model` (with :class:`CompileOptions`) returns an :class:`Artifact`;
:func:`read_manifest` / :func:`verify_artifact` read one back. TVM is imported lazily (only by
``build.py`` and ``tuning.py``), so importing this package is cheap. Contract: docs/artifacts.md.
"""

from edgekd.compile.api import Artifact, CompileOptions, compile_model, default_output_dir
from edgekd.compile.artifact import Manifest, read_manifest, verify_artifact

__all__ = ["compile_model", "CompileOptions", "Artifact", "default_output_dir", "Manifest", "read_manifest",
           "verify_artifact"]
