"""Structure learning: channel groups, cost models, per-block budgets, the λ controller, pruning and
the compress pipeline (teacher → structure learning with KD → prune → finetune with KD)."""
