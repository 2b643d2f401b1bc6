"""The distillation study: a teacher, a small student from scratch, and the same student taught by it.

Up to three supervised runs, each in its own subdirectory (own checkpoints,
exact resume), on the data of ``data.name`` passed in memory:

- ``WORKDIR/teacher``: the teacher (``distill.teacher_model``, for
  ``distill.teacher_steps``), unless ``distill.teacher_workdir`` names a
  trained supervised run to teach instead;
- ``WORKDIR/scratch``: the student (``model``) on the labels alone;
- ``WORKDIR/student``: the same student, seed and budget, trained on the
  distillation loss (``jaxdl.loops.distill.loss``) with the teacher, in
  evaluation mode, reading each step's augmented inputs.

Every bad input (a teacher whose classes or inputs differ from the data, a
model that cannot take the data) fails before anything trains. The study
writes ``WORKDIR/distill.json`` (which teacher, temperature and weight the
student learnt from: a resume with another is refused),
``WORKDIR/metrics.json`` and ``WORKDIR/distill.png``.
"""

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import data as data_lib
from jaxdl import models as models_lib
from jaxdl.loops import supervised
from jaxdl.loops.distill.config import OWN, TEACHER_MODEL, student_config, teacher_config, validate
from jaxdl.loops.distill.loss import teacher_loss_fn
from jaxdl.loops.distill.plots import plot_distill
from jaxdl.loops.distill.teacher import Teacher, load_teacher
from jaxdl.train import losses, parallel
from jaxdl.train.writers import console, write_json
from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count

RECORD_FILE = "distill.json"  # what the student learnt from, checked on resume


def model_params(config: ml_collections.ConfigDict, dataset: data_lib.Dataset, what: str) -> int:
  """The parameter count of ``config.model`` on ``dataset``'s inputs; a one-line error if it cannot take them."""
  model = models_lib.get_model(config.model.name, dataset.num_classes,
                               **models_lib.options_from_config(config.model))
  try:
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                            jnp.zeros((2, *dataset.input_shape), jnp.float32))
  except Exception as e:  # shape errors from inside Flax, made one line
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise JaxdlError(f"{what} '{config.model.name}' cannot take data '{dataset.name}' with inputs of shape "
                     f"{dataset.input_shape}: {first}") from e
  return param_count(shapes["params"])


def get_teacher(config: ml_collections.ConfigDict, workdir: pathlib.Path, dataset: data_lib.Dataset,
                mesh) -> tuple[Teacher, dict | None]:
  """The teacher: read from ``distill.teacher_workdir``, or trained in ``WORKDIR/teacher`` first.

  Returns:
    (the teacher, its run's metrics, or None for a teacher from elsewhere).
  """
  d = config[OWN]
  if d.teacher_workdir:
    teacher = load_teacher(d.teacher_workdir, dataset, mesh)
    console(f"jaxdl: distill: teacher {d.teacher_workdir} (step {teacher.run.step}, {teacher.params:,} params); "
            f"{OWN}.{TEACHER_MODEL}, {OWN}.teacher_steps and {OWN}.teacher_overrides go unused")
    return teacher, None
  sub = teacher_config(config)
  console(f"jaxdl: distill: teacher run -> {workdir / 'teacher'}")
  _, metrics = supervised.train_and_evaluate(sub, workdir / "teacher", data=dataset)
  return load_teacher(workdir / "teacher", dataset, mesh), metrics


def check_record(workdir: pathlib.Path, record: dict) -> None:
  """Writes ``WORKDIR/distill.json``, or refuses a resume whose student would learn from something else."""
  path = workdir / RECORD_FILE
  if path.is_file():
    saved = json.loads(path.read_text())
    changed = sorted(k for k in record if saved.get(k) != record[k])
    if changed:
      raise JaxdlError(f"{workdir} holds a student distilled with other {', '.join(changed)} "
                       f"({', '.join(f'{k}={saved.get(k)!r}' for k in changed)}): choose another --workdir")
    return
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(path, record)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> tuple[None, dict]:
  """Runs the study in ``workdir``; returns (None, the metrics written to ``metrics.json``).

  Keys: ``test_accuracy`` (the distilled student), ``scratch_test_accuracy``,
  ``teacher_test_accuracy`` (all on the data's test set), ``gap_closed``
  (the share of the teacher's lead over the scratch student that the
  distilled one makes up), ``student_params``, ``teacher_params``, the
  students' agreement with the teacher's predictions, the choices and the
  distilled student's ``params_sha256``.
  """
  validate(config)
  t0 = time.perf_counter()
  workdir = pathlib.Path(workdir)
  ds = data_lib.load_dataset(config.data.name, config.data.path or None, num_classes=config.data.num_classes)
  mesh = parallel.make_mesh(config.train.num_devices)
  student, d = student_config(config), config[OWN]
  if d.teacher_workdir:  # a teacher that does not fit the data is refused first
    load_teacher(d.teacher_workdir, ds, mesh)
  student_params = model_params(student, ds, "model")
  if not d.teacher_workdir:
    model_params(teacher_config(config), ds, f"{OWN}.{TEACHER_MODEL}")
  teacher, teacher_metrics = get_teacher(config, workdir, ds, mesh)
  check_record(workdir, {"temperature": float(d.temperature), "alpha": float(d.alpha),
                         "teacher_workdir": str(teacher.workdir.absolute()), "teacher_step": teacher.run.step,
                         "teacher_params_sha256": teacher.sha256})
  results = {"teacher": teacher_metrics}
  console(f"jaxdl: distill: scratch run -> {workdir / 'scratch'}")
  _, results["scratch"] = supervised.train_and_evaluate(student, workdir / "scratch", data=ds)
  loss_fn = teacher_loss_fn(teacher.model.apply, teacher.variables, temperature=float(d.temperature),
                            alpha=float(d.alpha))
  console(f"jaxdl: distill: distilled student run -> {workdir / 'student'}")
  _, results["student"] = supervised.train_and_evaluate(student, workdir / "student", data=ds, loss_fn=loss_fn)
  metrics = _metrics(config, workdir, ds, teacher, results, student_params, time.perf_counter() - t0)
  write_json(workdir / "metrics.json", metrics)
  plot_distill({name: _history(workdir / name) for name in ("scratch", "student")}, metrics,
               workdir / "distill.png")
  console(f"distill: student {metrics['test_accuracy']:.4f} vs scratch {metrics['scratch_test_accuracy']:.4f}, "
          f"teacher {metrics['teacher_test_accuracy']:.4f} (gap closed {_share(metrics['gap_closed'])}; "
          f"{student_params:,} vs {teacher.params:,} params) in {metrics['wall_seconds']:.0f} s "
          f"-> {workdir}/metrics.json")
  return None, metrics


def _share(gap_closed: float | None) -> str:
  return "n/a: the teacher is no better" if gap_closed is None else f"{gap_closed:.2f}"


def _test_logits(workdir: pathlib.Path, x: np.ndarray) -> np.ndarray:
  return supervised.load_run(workdir).predict(x)


def _metrics(config, workdir: pathlib.Path, ds: data_lib.Dataset, teacher: Teacher, results: dict,
             student_params: int, seconds: float) -> dict:
  d, student, scratch = config[OWN], results["student"], results["scratch"]
  onehot = np.eye(ds.num_classes, dtype=np.float32)[ds.y_test]
  logits = {"teacher": teacher.run.predict(ds.x_test), "scratch": _test_logits(workdir / "scratch", ds.x_test),
            "student": _test_logits(workdir / "student", ds.x_test)}
  predicted = {name: np.argmax(v, axis=-1) for name, v in logits.items()}
  accuracy = {name: float(np.mean(p == ds.y_test)) for name, p in predicted.items()}
  gap = accuracy["teacher"] - scratch["test_accuracy"]
  return {
      "test_accuracy": student["test_accuracy"],
      "scratch_test_accuracy": scratch["test_accuracy"],
      "teacher_test_accuracy": accuracy["teacher"],
      # None when the teacher is no better than the student from scratch: there is no gap to close.
      "gap_closed": (student["test_accuracy"] - scratch["test_accuracy"]) / gap if gap > 0 else None,
      # Cross-entropy on the test labels, comparable across the three (the student's run logs its distillation loss).
      "test_loss": float(np.mean(losses.cross_entropy(jnp.asarray(logits["student"]), onehot))),
      "scratch_test_loss": scratch["test_loss"],
      "teacher_test_loss": float(np.mean(losses.cross_entropy(jnp.asarray(logits["teacher"]), onehot))),
      "distill_test_loss": student["test_loss"],
      "teacher_agreement": float(np.mean(predicted["student"] == predicted["teacher"])),
      "scratch_teacher_agreement": float(np.mean(predicted["scratch"] == predicted["teacher"])),
      "student_params": student_params,
      "teacher_params": teacher.params,
      "params_ratio": teacher.params / student_params,
      "temperature": float(d.temperature),
      "alpha": float(d.alpha),
      "teacher_workdir": str(teacher.workdir.absolute()),
      "teacher_model": teacher.run.config.model.name,
      "model": config.model.name,
      "steps": student["steps"],
      "teacher_steps": teacher.run.step,
      "wall_seconds": seconds,
      "run_seconds": {name: r["wall_seconds"] for name, r in results.items() if r is not None},
      "seed": config.train.seed,
      "dataset": ds.name,
      "param_count": student["param_count"],
      "params_sha256": student["params_sha256"],
  }


def _history(subdir: pathlib.Path) -> list[dict]:
  path = subdir / "metrics.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
