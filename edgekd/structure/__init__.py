"""Structure learning: channel groups (``groups``), block ownership (``ownership``), cost models
(``costs``), per-block budget state (``budgets``), the λ_b policy (``policy``), BatchNorm γ edits
(``gammas``), the per-step controller (``controller``), reporting (``report``), the trainer glue
(``learner``), pruning (``prune``) and the guard that the pruned network computes what the masked one
did (``verify``). The compress pipeline that drives them (teacher → structure
learning with KD → prune → finetune with KD) is :mod:`edgekd.pipeline.compress`."""
