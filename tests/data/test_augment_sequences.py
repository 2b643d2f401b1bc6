"""Augmentation of padded sequences and token ids: it respects each sequence's length."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data import make_augment
from jaxdl.data.augment import TIME_MASK_SHARE
from jaxdl.utils.errors import JaxdlError

KEY = jax.random.PRNGKey(0)
LENGTHS = np.array([12, 5, 1, 9, 12, 7, 3, 10], np.int32)


def _batch(steps=12, features=3):
  # Values that are never 0, so a zero in the output is a fill or a mask.
  x = 1.0 + np.random.default_rng(0).random((len(LENGTHS), steps, features)).astype(np.float32)
  return jnp.asarray(x)


def _valid(steps=12):
  return np.arange(steps)[None, :] < LENGTHS[:, None]  # (B, T)


def test_a_shift_moves_each_sequence_within_its_own_length():
  x = np.asarray(_batch())
  out = np.asarray(make_augment(shift=3)(KEY, x, None, lengths=LENGTHS)[0])
  moved = 0
  for b, length in enumerate(LENGTHS):
    # The valid part is the input's own valid part moved by one offset in
    # [-3, 3], zeros where it left; nothing enters from the padding.
    padded = np.pad(x[b, :length], ((3, 3), (0, 0)))
    matches = [o for o in range(-3, 4) if np.array_equal(out[b, :length], padded[3 - o:3 - o + length])]
    assert matches, b
    moved += matches[0] != 0
    assert not out[b, length:].any()
  assert moved >= 4  # most of the 8 moved


def test_with_whole_lengths_the_shift_is_the_fixed_length_one():
  # Same offsets need the same draw: one spatial axis draws (B, 1) in both paths.
  x = _batch()
  whole = np.full(len(LENGTHS), 12, np.int32)
  np.testing.assert_array_equal(make_augment(shift=2)(KEY, x, None, lengths=whole)[0],
                                make_augment(shift=2)(KEY, x, None)[0])


def test_a_flip_reverses_only_the_valid_steps():
  x = _batch()
  out = np.asarray(make_augment(flip=True)(KEY, x, None, lengths=LENGTHS)[0])
  flipped = 0
  for b, length in enumerate(LENGTHS):
    same = np.array_equal(out[b], np.asarray(x)[b])
    reversed_ = np.array_equal(out[b, :length], np.asarray(x)[b, :length][::-1])
    assert same or reversed_, b
    flipped += not same
  assert 0 < flipped < len(LENGTHS)


def test_time_masks_fall_inside_the_valid_steps_and_stay_short():
  x = _batch(steps=40)
  lengths = np.array([40, 30, 20, 10, 6, 40, 35, 25], np.int32)
  out = np.asarray(make_augment(time_mask=6, num_masks=2)(KEY, x, None, lengths=lengths)[0])
  masked = (out == 0).all(axis=-1)  # (B, T): a whole step set to 0
  assert masked.any()
  for b, length in enumerate(lengths):
    np.testing.assert_array_equal(out[b, length:], np.asarray(x)[b, length:])
    cap = min(6, int(TIME_MASK_SHARE * length))
    assert masked[b].sum() <= 2 * cap, (b, masked[b].sum(), cap)
    np.testing.assert_array_equal(out[b][~masked[b]], np.asarray(x)[b][~masked[b]])


def test_frequency_masks_zero_whole_channels():
  x = _batch(features=13)
  out = np.asarray(make_augment(freq_mask=4)(KEY, x, None, lengths=LENGTHS)[0])
  masked = (out == 0).all(axis=1)  # (B, C): a channel zero at every step
  assert masked.any() and masked.sum(axis=1).max() <= 4
  np.testing.assert_array_equal(out[~np.broadcast_to(masked[:, None, :], out.shape)],
                                np.asarray(x)[~np.broadcast_to(masked[:, None, :], out.shape)])


def test_token_ids_shift_and_flip_as_one_channel_signals():
  ids = jnp.asarray(np.random.default_rng(1).integers(1, 50, (len(LENGTHS), 12)), jnp.int32)
  out, _ = make_augment(shift=2, flip=True)(KEY, ids, None, lengths=LENGTHS)
  assert out.dtype == jnp.int32 and out.shape == ids.shape
  for b, length in enumerate(LENGTHS):
    kept = np.asarray(out)[b, :length]
    assert set(kept[kept > 0]) <= set(np.asarray(ids)[b, :length])  # the vacated steps hold id 0
  with pytest.raises(JaxdlError, match="floating-point"):
    make_augment(noise=0.1)(KEY, ids, None)


def test_options_that_cannot_respect_lengths_or_the_layout_say_so():
  with pytest.raises(JaxdlError, match="augment.mixup does not mix padded sequences"):
    make_augment(mixup=0.2)(KEY, _batch(), jnp.ones((len(LENGTHS), 3)), lengths=LENGTHS)
  with pytest.raises(JaxdlError, match=r"augment.time_mask needs float sequences \(B, T, C\)"):
    make_augment(time_mask=3)(KEY, jnp.ones((8, 4, 4, 1)), None)
  for option in ("time_mask", "freq_mask"):
    with pytest.raises(JaxdlError, match=f"augment.{option} must be an integer >= 0"):
      make_augment(**{option: -1})
  with pytest.raises(JaxdlError, match="augment.num_masks must be an integer >= 1"):
    make_augment(time_mask=2, num_masks=0)
