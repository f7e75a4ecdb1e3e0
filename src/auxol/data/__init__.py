"""Reading images, masks and datasets (folders of parts, CSV lists)."""

from auxol.data.datasets import Listing, Pair, Part, find_parts, list_pairs, load_dataset, load_pair, read_csv_list, valid_pairs
from auxol.data.images import IMAGE_SUFFIXES, read_image, read_label_map, read_mask

__all__ = [
    "IMAGE_SUFFIXES",
    "Listing",
    "Pair",
    "Part",
    "find_parts",
    "list_pairs",
    "load_dataset",
    "load_pair",
    "read_csv_list",
    "read_image",
    "read_label_map",
    "read_mask",
    "valid_pairs",
]
