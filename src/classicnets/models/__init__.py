from .alexnet import AlexNet
from .cifar_resnet import CifarResNet
from .lenet import LeNet5
from .mlp import MLP
from .resnet import CifarStemResNet
from .rnn import RecurrentClassifier
from .seq2seq import Seq2Seq
from .vgg import VGG

__all__ = [
    "MLP",
    "VGG",
    "AlexNet",
    "CifarResNet",
    "CifarStemResNet",
    "LeNet5",
    "RecurrentClassifier",
    "Seq2Seq",
]
