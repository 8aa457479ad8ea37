"""The model family: the paper's ResNets and plain nets, and the course's case-study nets."""

from reslab.models.features import stage_extractor, stage_outputs
from reslab.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
    state_shapes,
)

__all__ = [
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "stage_extractor",
    "stage_outputs",
    "state_shapes",
]
