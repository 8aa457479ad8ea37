"""Training: the paper's recipes (:mod:`.config`), the loop (:mod:`.engine`), checkpoints,
schedules, run folders and distributed training."""
