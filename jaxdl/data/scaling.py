"""Per-feature standardisation fit on a training split: ``(a - mean) / std``, and back.

Tabular features come in units that differ by orders of magnitude (a
tumour's area beside its smoothness), and regression targets in their own
(disease progression from 25 to 346): a network trains on both best when
they are centred and of unit scale. The statistics come from the training
split only, so the test split stays unseen.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxdl.utils.errors import JaxdlError

# A feature whose training values are (nearly) constant is centred but not
# divided: its std would blow rounding noise up into large values.
_MIN_STD = 1e-8


@dataclasses.dataclass(frozen=True, eq=False)
class Standardizer:
  """``(a - mean) / std`` per feature, with the statistics of the array it was fit on.

  Attributes:
    mean: float64, the shape of one example.
    std: float64, the same shape; 1 where the training values were constant.
  """

  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, array: Any) -> Standardizer:
    """The per-feature mean and (population) standard deviation over the examples (axis 0)."""
    array = np.asarray(array, np.float64)
    std = array.std(axis=0)
    return cls(mean=array.mean(axis=0), std=np.where(std < _MIN_STD, 1.0, std))

  def apply(self, array: Any) -> np.ndarray:
    """``(array - mean) / std`` as float32, for arrays (N, *example shape)."""
    return ((np.asarray(array, np.float64) - self.mean) / self.std).astype(np.float32)

  def invert(self, array: Any) -> np.ndarray:
    """``array * std + mean`` as float32: standardised values back in their units."""
    return (np.asarray(array, np.float64) * self.std + self.mean).astype(np.float32)

  def to_json(self) -> dict[str, Any]:
    return {"shape": list(self.mean.shape), "mean": self.mean.ravel().tolist(), "std": self.std.ravel().tolist()}

  @classmethod
  def from_json(cls, record: dict[str, Any], where: str) -> Standardizer:
    """The inverse of :meth:`to_json`; ``where`` names the record in the error."""
    try:
      shape = tuple(record["shape"])
      return cls(mean=np.asarray(record["mean"], np.float64).reshape(shape),
                 std=np.asarray(record["std"], np.float64).reshape(shape))
    except (KeyError, TypeError, ValueError) as e:
      raise JaxdlError(f"{where}: not a standardisation record ({type(e).__name__}: {e})") from None
