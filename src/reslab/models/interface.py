"""The interface every reslab model shares around its classifier (timm's method names)."""

from __future__ import annotations

from torch import Tensor, nn

from reslab.errors import check_positive


class ModelInterface:
    """Mixin for an ``nn.Module`` with ``forward_features`` and ``forward_head``: reslab's model
    interface (timm's names) around the last fc layer, found at the submodule path
    ``logits_name``. Every registered model has it: the ResNets and the classic nets."""

    logits_name: str

    @property
    def num_features(self) -> int:
        """Width of the last fc layer's input (the ``pre_logits`` output). A model whose
        classifier may be swapped for ``nn.Identity`` (feature extraction) overrides it with
        the width it was built with."""
        return self.get_submodule(self.logits_name).in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last fc layer with a fresh one of ``num_classes`` outputs (for fine-tuning),
        on the model's device and in its dtype (a double or bf16 model stays runnable).

        Args:
            num_classes: The new number of classes.
        """
        check_positive(num_classes=num_classes)
        weight = next(self.parameters())
        self.set_submodule(self.logits_name, nn.Linear(self.num_features, num_classes).to(
            device=weight.device, dtype=weight.dtype))
