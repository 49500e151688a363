"""Training: the engine (loop, checkpoints, resume, DDP) and the objectives it optimises (CE, KD, hints)."""
