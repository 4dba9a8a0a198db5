"""Datasets (digits, mnist1d, cifar10) and binary relabelling tasks.

``x_train, y_train, x_test, y_test = paramgen.data.load("digits")`` gives float32 features and
int64 labels; nothing is downloaded.
"""

from paramgen.data.loaders import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATASETS,
    DatasetInfo,
    canonical_name,
    input_shape,
    list_datasets,
    load,
    num_classes,
)
from paramgen.data.tasks import (
    all_tasks,
    bits_to_condition,
    class_weights,
    parse_bits,
    parse_task_spec,
    read_task_file,
    relabel,
    resolve_tasks,
    task_index,
    task_subset,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DatasetInfo",
    "canonical_name",
    "all_tasks",
    "bits_to_condition",
    "class_weights",
    "input_shape",
    "list_datasets",
    "load",
    "num_classes",
    "parse_bits",
    "parse_task_spec",
    "read_task_file",
    "relabel",
    "resolve_tasks",
    "task_index",
    "task_subset",
]
