"""reslab: deep residual learning for image recognition (He et al., CVPR 2016) in PyTorch.

The Python API::

    import reslab
    model = reslab.create_model("resnet20", num_classes=10)
    reslab.list_models("resnet*")
"""

from reslab.errors import ReslabError
from reslab.models import create_model, list_models, model_info

__version__ = "0.1.0"

__all__ = ["ReslabError", "__version__", "create_model", "list_models", "model_info"]
