"""``charlm_transformer`` on texts it was not tuned on: best validation bpc against the bigram.

    python benchmarks/charlm_own_text.py --build texts/                # writes the three texts
    python benchmarks/charlm_own_text.py --texts texts/ --out own_text.json [NAME ...]

Each text runs as a new user would run it, the preset with the data keys
alone, in a fresh workdir (``--workdirs``, default a temporary folder):

    jaxdl run charlm_transformer --set data.name=text --set data.path=FILE

The table gives the text, its size, the bigram's and the best validation
bits per character, how far below the bigram that is (the target: >= 40% on
any English text of 200 KB or more), the step it was reached at, the steps
run, the settings derived from the text's size and the wall time; ``--out``
writes the same as JSON. None of the texts is the preset's own corpus (the
stdlib's source). Where each comes from (``--build`` makes them, and checks
their SHA-256 against the ones measured in the README):

- ``genesis``: the Book of Genesis, King James Version (public domain), as
  Debian's ``bible`` program prints it (``bible -l 79 gen1:1-gen50:26``),
  from the packages bible-kjv 4.38 and bible-kjv-text 4.38, fetched with
  ``apt-get download bible-kjv bible-kjv-text`` and unpacked with
  ``dpkg-deb -x``. Narrative prose, 204,674 bytes.
- ``licences``: the licence texts of ``/usr/share/common-licenses`` (Debian's
  base-files: Apache-2.0, Artistic, BSD, CC0-1.0, GFDL, GPL, LGPL, MPL),
  symbolic links skipped, concatenated in name order. Legal prose, 237,320
  bytes; the validation tenth is most of MPL-2.0.
- ``vim_manual``: the Vim 9.0 user manual, ``/usr/share/vim/vim90/doc/usr_*.txt``
  concatenated in name order. Technical documentation, 641,560 bytes.
"""

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

TEXTS = ("genesis", "licences", "vim_manual")
# The SHA-256 of each text as measured for the README (Debian 12 packages).
SHA256 = {
    "genesis": "83ad953147dbabd2a4e5b7eab00a758d5a55c2c4437a1cfb85154cb223e526ae",
    "licences": "e702fc128a22ec5f42b88d701ba068de1515b336f5af4e0d6e144a3795587db2",
    "vim_manual": "3ed1338971d6ae0a3280dac059f0dfb4e4068b8584dd80525c6ec31ca8be7f24",
}
LICENCES, VIM_DOC = pathlib.Path("/usr/share/common-licenses"), pathlib.Path("/usr/share/vim/vim90/doc")


def _genesis() -> bytes:
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run(["apt-get", "download", "bible-kjv", "bible-kjv-text"], cwd=tmp, check=True,
                   capture_output=True)
    for deb in sorted(pathlib.Path(tmp).glob("*.deb")):
      subprocess.run(["dpkg-deb", "-x", str(deb), "root"], cwd=tmp, check=True)
    root = pathlib.Path(tmp) / "root"
    return subprocess.run([str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "-l", "79",
                           "gen1:1-gen50:26"], check=True, capture_output=True).stdout


def _licences() -> bytes:
  return b"".join(p.read_bytes() for p in sorted(LICENCES.iterdir()) if p.is_file() and not p.is_symlink())


def _vim_manual() -> bytes:
  return b"".join(p.read_bytes() for p in sorted(VIM_DOC.glob("usr_*.txt")))


def build(folder: pathlib.Path) -> None:
  """Writes ``NAME.txt`` for each text into ``folder`` and says whether it is the one measured."""
  folder.mkdir(parents=True, exist_ok=True)
  for name, make in (("genesis", _genesis), ("licences", _licences), ("vim_manual", _vim_manual)):
    data = make()
    (folder / f"{name}.txt").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    same = "the text measured" if digest == SHA256[name] else "NOT the text measured in the README"
    print(f"{name}: {len(data):,} bytes, sha256 {digest[:16]}... ({same})")


def run(name: str, path: pathlib.Path, workdir: pathlib.Path) -> dict:
  cmd = [sys.executable, "-m", "jaxdl", "run", "charlm_transformer", "--workdir", str(workdir),
         "--set", "data.name=text", "--set", f"data.path={path}"]
  t = time.perf_counter()
  done = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
  if done.returncode:
    sys.exit(f"{name}: {' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1]}")
  m = json.loads((workdir / "metrics.json").read_text())
  return {"text": name, "bytes": path.stat().st_size, "sha256": m["corpus_sha256"], "chars": m["corpus_chars"],
          "bigram_bpc": m["bigram_bpc"], "best_val_bpc": m["best_val_bpc"], "below_bigram": m["bpc_vs_bigram"],
          "best_step": m["best_step"], "steps": m["steps"], "last_val_bpc": m["val_bpc"], "derived": m["derived"],
          "wall_seconds": time.perf_counter() - t, "command": " ".join(cmd[1:])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", help=f"default: {', '.join(TEXTS)}")
  parser.add_argument("--build", type=pathlib.Path, help="write the texts into this folder and stop")
  parser.add_argument("--texts", type=pathlib.Path, help="the folder --build wrote")
  parser.add_argument("--workdirs", type=pathlib.Path, help="keep the runs here (default: a temporary folder)")
  parser.add_argument("--out", type=pathlib.Path, help="write the rows as JSON")
  args = parser.parse_args()
  if args.build:
    build(args.build)
    return
  if not args.texts:
    parser.error("--texts (or --build) is required")
  rows = []
  print(f"{'text':<11} {'bytes':>9} {'bigram':>7} {'best val':>8} {'below':>6} {'at step':>7} {'steps':>5} "
        f"{'wall s':>6}  derived", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.names or TEXTS:
      rows.append(run(name, args.texts / f"{name}.txt", (args.workdirs or pathlib.Path(tmp)) / name))
      r = rows[-1]
      print(f"{r['text']:<11} {r['bytes']:>9,} {r['bigram_bpc']:>7.3f} {r['best_val_bpc']:>8.3f} "
            f"{r['below_bigram']:>6.1%} {r['best_step']:>7} {r['steps']:>5} {r['wall_seconds']:>6.0f}  "
            f"{', '.join(f'{k}={v}' for k, v in r['derived'].items())}", flush=True)
  if args.out:
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
  main()
