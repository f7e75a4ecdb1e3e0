"""Reading images, masks and datasets, and degrading masks to simulate annotation noise."""

from auxol.data.datasets import Listing, Pair, Part, find_parts, list_pairs, load_dataset, load_pair, read_csv_list
from auxol.data.images import IMAGE_SUFFIXES, read_image, read_label_map, read_mask
from auxol.data.noise import degrade_mask

__all__ = [
    "IMAGE_SUFFIXES",
    "Listing",
    "Pair",
    "Part",
    "degrade_mask",
    "find_parts",
    "list_pairs",
    "load_dataset",
    "load_pair",
    "read_csv_list",
    "read_image",
    "read_label_map",
    "read_mask",
]
