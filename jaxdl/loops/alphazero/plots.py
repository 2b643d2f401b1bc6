"""AlphaZero's plots: the loss and the match rates over training, and a rendered game."""

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from jaxdl.loops.alphazero.arena import board_planes
from jaxdl.train.plots import figure, save


def plot_training(history: Sequence[dict], path: str | os.PathLike, *, opponents: Sequence[str],
                  title: str = "") -> pathlib.Path:
  """Left: the policy and value losses per iteration. Right: win/draw/loss rates per opponent."""
  fig = figure(11, 3.8)
  left, right = fig.subplots(1, 2)
  for key, label in (("train/policy_loss", "policy cross-entropy"), ("train/value_loss", "value MSE")):
    points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float)) and r[key] > 0]
    if points:
      steps, values = np.asarray(points).T
      left.plot(steps, values, label=label)
  left.set_xlabel("iteration")
  left.set_ylabel("loss")
  left.set_yscale("log")
  left.grid(alpha=0.3)
  if left.get_lines():
    left.legend(fontsize=8)
  colors = {"win": "tab:green", "draw": "tab:gray", "loss": "tab:red"}
  styles = ["o-", "s--", "^:"]
  for opponent, style in zip(opponents, styles):
    for outcome, color in colors.items():
      key = f"test/{outcome}_rate/{opponent}"
      points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
      if points:
        steps, values = np.asarray(points).T
        right.plot(steps, values, style, color=color, markersize=4, label=f"{outcome} vs {opponent}")
  right.set_xlabel("iteration")
  right.set_ylabel("rate (net's side)")
  right.set_ylim(-0.03, 1.03)
  right.grid(alpha=0.3)
  if right.get_lines():
    right.legend(fontsize=7, ncol=max(1, len(opponents)), loc="center right")
  return save(fig, path, title)


def _move_numbers(game: dict) -> np.ndarray:
  """(H, W): the move that put each stone still on the board (0: empty or captured)."""
  obs, mover, first = game["obs"], game["mover"], game["first_id"]
  numbers = np.zeros(obs.shape[1:3], np.int32)
  before = board_planes(obs[0], int(mover[0]), first)
  for t in range(game["moves"]):
    after = board_planes(obs[t + 1], int(mover[t + 1]), first)
    numbers[(before == 0) & (after != 0)] = t + 1
    numbers[after == 0] = 0
    before = after
  return numbers


def plot_game(game: dict, path: str | os.PathLike, *, game_name: str, opponent: str) -> pathlib.Path:
  """The final board of a recorded game (``arena.describe`` plus ``obs``/``mover``), moves numbered."""
  from matplotlib.patches import Circle

  board = game["final_board"]
  numbers = _move_numbers(game)
  rows, cols = board.shape
  fig = figure(0.55 * cols + 1.6, 0.55 * rows + 1.3)
  ax = fig.subplots()
  go = game_name == "go"
  ax.set_facecolor("#dcb35c" if go else ("#1f4e9c" if game_name == "connect_four" else "white"))
  for r in range(rows + (0 if go else 1)):
    ax.plot([-0.5 + (0.5 if go else 0), cols - 0.5 - (0.5 if go else 0)], [r - 0.5 + (0.5 if go else 0)] * 2,
            color="black", linewidth=0.8)
  for c in range(cols + (0 if go else 1)):
    ax.plot([c - 0.5 + (0.5 if go else 0)] * 2, [-0.5 + (0.5 if go else 0), rows - 0.5 - (0.5 if go else 0)],
            color="black", linewidth=0.8)
  first_color, second_color = (("black", "white") if go else ("tab:red", "gold") if game_name == "connect_four"
                               else ("tab:blue", "tab:orange"))
  for r in range(rows):
    for c in range(cols):
      if board[r, c] == 0:
        continue
      color = first_color if board[r, c] > 0 else second_color
      if game_name == "tic_tac_toe":
        ax.text(c, r, "X" if board[r, c] > 0 else "O", ha="center", va="center", fontsize=28, color=color)
      else:
        ax.add_patch(Circle((c, r), 0.42, facecolor=color, edgecolor="black", linewidth=0.6))
      if numbers[r, c]:
        text_color = "white" if color == "black" else "black"
        ax.text(c + (0.3 if game_name == "tic_tac_toe" else 0), r + (0.3 if game_name == "tic_tac_toe" else 0),
                str(numbers[r, c]), ha="center", va="center", fontsize=7, color=text_color)
  ax.set_xlim(-0.6, cols - 0.4)
  ax.set_ylim(rows - 0.4, -0.6)
  ax.set_aspect("equal")
  ax.set_xticks([])
  ax.set_yticks([])
  side = "first" if game["net_first"] else "second"
  outcome = {1.0: "the net wins", 0.0: "a draw", -1.0: "the net loses"}.get(game["result"], f"{game['result']:+g}")
  ax.set_title(f"{game_name}: net (moving {side}) vs {opponent}\n{game['moves']} moves, {outcome}", fontsize=9)
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  return path
