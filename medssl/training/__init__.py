"""One plain training loop (AMP, accumulation, DDP, atomic checkpoints, exact resume,
metrics) shared by pretraining and fine-tuning. Import from the submodules:
``medssl.training.trainer.fit``, ``medssl.training.config.TrainConfig``."""
