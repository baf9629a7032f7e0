"""Datasets: loaders for the published math-word-problem sets, a registry, a synthetic generator."""

from distill.data.base import (
    DATA_DIR_ENV,
    DataError,
    DataNotFoundError,
    DatasetLoader,
    LoadResult,
    Reject,
    UnknownDatasetError,
    UnknownSplitError,
    dataset_names,
    get_loader,
    register_dataset,
    resolve_data_dir,
)

__all__ = [
    "DATA_DIR_ENV",
    "DataError",
    "DataNotFoundError",
    "DatasetLoader",
    "LoadResult",
    "Reject",
    "UnknownDatasetError",
    "UnknownSplitError",
    "dataset_names",
    "get_loader",
    "register_dataset",
    "resolve_data_dir",
]
