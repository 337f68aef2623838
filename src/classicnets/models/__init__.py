from .alexnet import AlexNet
from .cifar_resnet import CifarResNet
from .lenet import LeNet5
from .mlp import MLP
from .resnet import ResNet
from .vgg import VGG

__all__ = [
    "MLP",
    "VGG",
    "AlexNet",
    "CifarResNet",
    "LeNet5",
    "ResNet",
]
