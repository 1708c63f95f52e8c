"""Long-tailed datasets: class-count profiles, seeded subsampling, and dataset builders."""

from .array_dataset import ArrayImageDataset
from .long_tail import LongTailedSplit, long_tailed_counts, long_tailed_split
from .registry import DATASETS, LongTailedData, build_dataset, register_dataset
from .sources import DatasetNotFoundError, default_data_root
from .split_file import ImageLoadError, MissingImagesError, SplitFileDataset, read_split_file

__all__ = ["ArrayImageDataset", "LongTailedSplit", "long_tailed_counts", "long_tailed_split", "DATASETS",
           "LongTailedData", "build_dataset", "register_dataset", "DatasetNotFoundError", "default_data_root",
           "ImageLoadError", "MissingImagesError", "SplitFileDataset", "read_split_file"]
