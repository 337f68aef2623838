"""AG News topic classification (Zhang et al., 2015, "Character-level Convolutional Networks for Text
Classification"): 120k/7.6k news articles in 4 classes.

The official CSV files, `<data_dir>/ag_news_csv/{train,test}.csv`, have no header and three columns: the
class index 1-4, the title and the description. The text is the title and the description together.
"""

from __future__ import annotations

import csv
from pathlib import Path

from torchvision.datasets.utils import download_url

from classicnets.data.download import download_or_explain
from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from classicnets.data.text.datamodule import TextClassificationDataModule
from classicnets.data.text.readers import Example

FOLDER = "ag_news_csv"
# the copy torchtext downloads, with torchtext's checksums (the original is on a Google Drive)
BASE_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
MD5 = {"train.csv": "b1a00f826fdfbd249f79597b59e1dc12", "test.csv": "d52ea96a97a2d943681189a97654912d"}


class AGNewsDataModule(TextClassificationDataModule):
    """World, Sports, Business and Sci/Tech news; the validation split is cut from the training file."""

    classes = ("World", "Sports", "Business", "Sci/Tech")

    def __init__(self, data_dir: str | Path, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.data_dir = Path(data_dir).expanduser()

    @property
    def csv_dir(self) -> Path:
        return self.data_dir / FOLDER

    def prepare_data(self) -> None:
        missing = [name for name in MD5 if not (self.csv_dir / name).is_file()]
        if not missing:
            return

        def download() -> None:
            for name in missing:
                download_url(f"{BASE_URL}/{name}", str(self.csv_dir), filename=name, md5=MD5[name])

        download_or_explain(download, "AG News", self.csv_dir, list(MD5))

    def read_split(self, split: str) -> list[Example] | None:
        if split == "val":
            return None
        path = self.csv_dir / f"{split}.csv"
        if not path.is_file():
            raise DatasetNotFoundError(f"AG News: {path} does not exist (expected {', '.join(MD5)} there)")
        examples = []
        with open(path, encoding="utf-8", newline="") as file:
            reader = csv.reader(file)
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if len(row) != 3 or row[0].strip() not in {"1", "2", "3", "4"}:
                    raise CorruptDatasetError(
                        f"{where}: expected class index 1-4, title, description; got {row}"
                    )
                # the files escape line breaks as a literal backslash followed by "n"
                text = f"{row[1]}. {row[2]}".replace("\\n", " ")
                examples.append(Example(text, self.classes[int(row[0]) - 1], where))
        if not examples:
            raise CorruptDatasetError(f"{path} is empty")
        return examples
