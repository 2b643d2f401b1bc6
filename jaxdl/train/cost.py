"""What one training step costs: its FLOPs, its peak memory, and on a GPU its MFU.

Every run says once, as it starts, what XLA will run per step, and
``metrics.json`` keeps it:

- ``flops_per_step``: the model FLOPs of one optimizer step over the whole
  global batch, forward and backward, counted as 2 per
  multiply-add of every matrix product (``dot_general``) and convolution
  in the step's jaxpr, the convention of MFU (Chowdhery et al. 2022,
  PaLM, appendix B). Elementwise work is left out; a fast algorithm's
  products count as the operation they compute (Winograd's convolution:
  ``jaxdl.utils.flops``). The count walks the
  chunk's program: a ``scan`` (a recurrence over time, gradient
  accumulation's micro-batches) counts its body once per iteration, and
  the chunk's own loop, whose trip count is only known when it runs,
  counts once: one step. XLA's ``cost_analysis()`` counts every loop body
  once, so it undercounts recurrent models by their length; that is why
  the count is jaxdl's own.
- ``peak_bytes``: the bytes one device holds at the step's peak by XLA's
  account (``Compiled.memory_analysis()``: arguments, outputs and
  temporaries, less the donated buffers the outputs reuse). The program
  compiled for it is the one training runs, not an extra compile.
- ``mfu`` (GPUs of known peak only): ``flops_per_step`` times steps per
  second over the devices' dense peak at the compute dtype.
"""

import math
from collections.abc import Mapping
from typing import Any

import jax
from jax.extend import core as jex_core

from jaxdl.train import memory
from jaxdl.utils import flops as flops_lib

# Dense peak FLOP/s per device (no sparsity), by compute dtype, from the
# vendors' data sheets; float32 matmuls run as TF32 on these GPUs under JAX's
# default precision. Matched as substrings of ``device.device_kind``, first first.
PEAK_FLOPS: tuple[tuple[str, Mapping[str, float]], ...] = (
    ("H200", {"bfloat16": 989.4e12, "float32": 494.7e12}),  # NVIDIA H200 data sheet (as H100 SXM)
    ("H100", {"bfloat16": 989.4e12, "float32": 494.7e12}),  # NVIDIA H100 SXM data sheet
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),  # NVIDIA A100 data sheet
    ("L4", {"bfloat16": 121e12, "float32": 60e12}),  # NVIDIA L4 data sheet
)


def _shape(var) -> tuple[int, ...]:
  return tuple(var.aval.shape)


def _dot_flops(eqn) -> float:
  (lhs, rhs), ((_, rhs_contract), (_, rhs_batch)) = eqn.invars, eqn.params["dimension_numbers"]
  kept = [d for i, d in enumerate(_shape(rhs)) if i not in rhs_contract and i not in rhs_batch]
  # A product that stands for more multiply-adds (Winograd's) counts those: see jaxdl.utils.flops.
  return 2.0 * math.prod(_shape(lhs)) * math.prod(kept) * flops_lib.factor_of(str(eqn.source_info.name_stack))


def _conv_flops(eqn) -> float:
  rhs, out = eqn.invars[1], eqn.outvars[0]
  out_features = eqn.params["dimension_numbers"].rhs_spec[0]
  kernel = _shape(rhs)
  return 2.0 * math.prod(_shape(out)) * math.prod(kernel) / kernel[out_features]


def _sub_jaxprs(value: Any):
  if isinstance(value, jex_core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jex_core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def matmul_flops(jaxpr: jex_core.Jaxpr) -> float:
  """2 x the multiply-adds of the matrix products and convolutions in ``jaxpr`` (see the module's notes)."""
  total = 0.0
  for eqn in jaxpr.eqns:
    name, params = eqn.primitive.name, eqn.params
    if name == "dot_general":
      total += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif name == "scan":
      total += params["length"] * matmul_flops(params["jaxpr"].jaxpr)
    elif name == "cond":  # the dearest branch
      total += max(matmul_flops(b.jaxpr) for b in params["branches"])
    elif name == "shard_map":  # the body sees one shard: once per device
      total += params["mesh"].size * matmul_flops(params["jaxpr"])
    else:  # while (its body once), jit, remat, custom derivatives: their inner programs
      total += sum(matmul_flops(sub) for value in params.values() for sub in _sub_jaxprs(value))
  return total


def chunk_cost(jitted_chunk, *args) -> dict[str, float]:
  """``flops_per_step`` and ``peak_bytes`` of a jitted chunk called as ``jitted_chunk(*args)``.

  The chunk's length argument should be a traced ``np.int32``. The program
  compiled here is the one the call then runs (JAX keeps it), so the
  numbers cost a trace, not a compile.
  """
  if hasattr(jitted_chunk, "cost"):  # a jaxdl.train.programs.PersistentJit: its FLOPs were counted when traced
    flops, compiled = jitted_chunk.cost(*args)
  else:
    traced = jitted_chunk.trace(*args)
    flops, compiled = matmul_flops(traced.jaxpr.jaxpr), traced.lower().compile()
  cost = {"flops_per_step": flops}
  peak = memory.compiled_bytes(compiled)
  if peak is not None:
    cost["peak_bytes"] = peak
  return cost


def peak_flops(device: jax.Device, dtype: str) -> float | None:
  """A device's dense peak FLOP/s at ``dtype``, or None for devices not in :data:`PEAK_FLOPS` (CPUs)."""
  if device.platform != "gpu":
    return None
  kind = getattr(device, "device_kind", "")
  for name, peaks in PEAK_FLOPS:
    if name in kind:
      return peaks.get(dtype)
  return None


def mfu(flops_per_step: float, steps_per_second: float, devices: int, peak: float | None) -> float | None:
  """Model FLOPs utilisation: the FLOP/s achieved over ``devices`` times the per-device ``peak``."""
  if not peak or steps_per_second <= 0:
    return None
  return float(flops_per_step * steps_per_second / (devices * peak))


def describe(cost: Mapping[str, float], devices: int) -> str:
  """The start-up line: ``one step: 1.23 GFLOP over 8 devices, peak 45.6 MiB per device``."""
  flops = cost["flops_per_step"]
  unit, scale = next(((u, s) for u, s in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6))
                      if flops >= s), ("kFLOP", 1e3))
  text = f"one step: {flops / scale:.3g} {unit} (the matmuls and convolutions of forward and backward)"
  text += f" over {devices} device{'s' if devices > 1 else ''}"
  if "peak_bytes" in cost:
    text += f", peak {cost['peak_bytes'] / 2 ** 20:.1f} MiB per device (XLA's account)"
  return text
