"""reslab: deep residual learning for image recognition (He et al., CVPR 2016) in PyTorch.

The Python API::

    import reslab
    model = reslab.create_model("resnet20", num_classes=10)
    reslab.list_models("resnet*")
    result = reslab.train(model="resnet20", data="cifar10", data_dir="data")  # Sec. 4.2 recipe
    predictor = reslab.load("runs/resnet20-cifar10")  # the model, class names, preprocessing
    predictor.topk(["cat.png"], k=3)
    reslab.evaluate("runs/resnet20-cifar10", data="cifar10").top1_error
"""

from reslab.errors import ReslabError
from reslab.eval.predictor import Predictor, load
from reslab.eval.runner import evaluate
from reslab.models import create_model, list_models, model_info
from reslab.train.config import TrainConfig
from reslab.train.engine import train  # binds reslab.train to the function, not the package

__version__ = "0.1.0"

__all__ = [
    "Predictor", "ReslabError", "TrainConfig", "__version__", "create_model", "evaluate",
    "list_models", "load", "model_info", "train",
]
