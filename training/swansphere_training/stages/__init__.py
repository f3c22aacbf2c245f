"""Training stages. Each stage subclasses :class:`~swansphere_training.stages.base.Stage`
(``build_model``, ``build_data``, ``step``, ``evaluate``) and is trained by ``Stage.fit``:
seeded, exactly resumable from its safetensors checkpoints, logged to MLflow through
:mod:`swansphere_training.tracking`, and DDP-ready under torchrun.
"""

from swansphere_training.stages.base import (
    DistInfo,
    FitOptions,
    FitResult,
    Stage,
    StepBatchSampler,
    derive_seed,
    seed_everything,
    select_device,
)

__all__ = [
    "DistInfo",
    "FitOptions",
    "FitResult",
    "Stage",
    "StepBatchSampler",
    "derive_seed",
    "seed_everything",
    "select_device",
]
