from .alexnet import AlexNet
from .cifar_resnet import CifarResNet
from .lenet import LeNet5
from .mlp import MLP
from .resnet import ResNet
from .rnn import RecurrentClassifier
from .seq2seq import Seq2Seq
from .vgg import VGG

__all__ = [
    "MLP",
    "VGG",
    "AlexNet",
    "CifarResNet",
    "LeNet5",
    "RecurrentClassifier",
    "ResNet",
    "Seq2Seq",
]
