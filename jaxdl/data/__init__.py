"""Datasets as host arrays, and augmentation that runs on device.

``load_dataset(name, path)`` returns a :class:`Dataset` of NumPy arrays (inputs
float32 channels last, labels int32); ``make_augment(...)`` builds a pure,
jittable ``augment(key, x, y_soft)``. Nothing here downloads: the data comes
from scikit-learn (digits), the ``mnist1d`` generator, or the user's files
(``.npz``, MNIST IDX, CIFAR-10 batches; writers in :mod:`jaxdl.data.files`).
Text for language models comes from :mod:`jaxdl.data.text` (``load_text``):
the Python standard library's own source, or a user's text file. Explicit
ratings for recommenders (MovieLens files and their splits, synthetic low-rank
ratings) come from :mod:`jaxdl.data.ratings` (``load_ratings``).
"""

from jaxdl.data.augment import make_augment
from jaxdl.data.dataset import Dataset
from jaxdl.data.sequences import normalize_sequences, with_steps
from jaxdl.data.loaders import DATASETS, load_dataset
from jaxdl.data.ratings import Ratings, load_ratings, synthetic_ratings
from jaxdl.data.ratings_files import write_ratings
from jaxdl.data.scaling import Standardizer
from jaxdl.data.text import TEXT_DATASETS, TextCorpus, corpus_from_text, load_text

__all__ = ["DATASETS", "Dataset", "Standardizer", "TEXT_DATASETS", "TextCorpus", "corpus_from_text", "load_dataset",
           "load_text", "make_augment", "normalize_sequences", "with_steps",
           "Ratings", "load_ratings", "synthetic_ratings", "write_ratings"]  # explicit ratings (jaxdl.data.ratings)
