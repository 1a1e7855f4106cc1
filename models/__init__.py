"""Reference models built from cnnkern layers (importable as cnnkern.models).

Every constructor takes `algo=` (passed to its convolutions) and `backend=` ("cnnkern", or
"torch" for the plain-torch twin with identical state_dict keys). Where torchvision has the
model, the keys are torchvision's, so its weights load unchanged (from a file or dict you
have: nothing is downloaded).
"""

from .alexnet import AlexNet, AlexNetOriginal, alexnet, alexnet_original
from .fcn import FCN8s, fcn_vgg16
from .googlenet import GoogLeNet, googlenet
from .lenet import LeNet5, lenet5
from .localization import ClassifierLocalizer, box_iou, dice, iou
from .resnet import ResNet, resnet18, resnet50
from .vgg import VGG, vgg16, vgg16_bn

MODELS = {
    "lenet5": lenet5, "alexnet_original": alexnet_original, "alexnet": alexnet,
    "vgg16": vgg16, "vgg16_bn": vgg16_bn, "resnet18": resnet18, "resnet50": resnet50,
    "googlenet": googlenet, "fcn_vgg16": fcn_vgg16,
}

__all__ = ["MODELS", "AlexNet", "AlexNetOriginal", "ClassifierLocalizer", "FCN8s", "GoogLeNet",
           "LeNet5", "ResNet", "VGG", "alexnet", "alexnet_original", "box_iou", "dice",
           "fcn_vgg16", "googlenet", "iou", "lenet5", "resnet18", "resnet50", "vgg16",
           "vgg16_bn"]
