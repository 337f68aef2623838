"""LightningDataModules. They know nothing of models or tasks; `sizes` tells the pipeline what they hold."""

from classicnets.data.cifar import CIFAR10DataModule
from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from classicnets.data.image_folder import ImageFolderDataModule
from classicnets.data.mnist import FashionMNISTDataModule, MNISTDataModule
from classicnets.data.text.ag_news import AGNewsDataModule
from classicnets.data.text.dates import DatesDataModule
from classicnets.data.text.files import TextFilesDataModule
from classicnets.data.text.imdb import IMDBDataModule
from classicnets.data.text.parallel import ParallelTextDataModule

__all__ = [
    "AGNewsDataModule",
    "CIFAR10DataModule",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "DatesDataModule",
    "FashionMNISTDataModule",
    "IMDBDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "ParallelTextDataModule",
    "TextFilesDataModule",
]
