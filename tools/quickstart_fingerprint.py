"""Fingerprint a fixed-seed quickstart run, to prove that a refactoring changed no behaviour.

    python tools/quickstart_fingerprint.py run  --out /tmp/before.json     # on the old commit
    python tools/quickstart_fingerprint.py run  --out /tmp/after.json      # on the new commit
    python tools/quickstart_fingerprint.py compare /tmp/before.json /tmp/after.json

`run` trains the bundled quickstart recipe through the command line (`hf-mtl quickstart`, so the fingerprint
does not depend on any Python API that a refactoring may move), then records:

- every log line the Trainer printed (training losses, per-task losses, learning rates, evaluation metrics),
  minus the wall-clock keys (runtimes, throughput);
- the SHA-256 of every tensor of the saved `model.safetensors` (bytes, dtype and shape);
- the saved `config.json` without its version stamp.

`compare` prints what differs and exits 1 when anything does; identical runs print "bit-identical".
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: log keys that measure time, not behaviour
_WALL_CLOCK = ("runtime", "per_second", "total_flos")


def _log_lines(output: str) -> list[dict[str, Any]]:
    """The dicts the Trainer printed (`{'loss': ..., ...}`), in order, without wall-clock keys."""
    logs = []
    for line in output.splitlines():
        line = line.strip()
        start = line.find("{'")
        if start < 0 or not line.endswith("}"):
            continue
        try:
            entry = ast.literal_eval(line[start:])
        except (ValueError, SyntaxError):
            continue
        if isinstance(entry, dict):
            logs.append({k: v for k, v in entry.items() if not any(w in k for w in _WALL_CLOCK)})
    return logs


def _tensor_hashes(path: Path) -> dict[str, str]:
    from safetensors.numpy import load_file

    out = {}
    for name, array in sorted(load_file(str(path)).items()):
        digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]
        out[name] = f"{array.dtype}{list(array.shape)}:{digest}"
    return out


def run(out: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hf_mtl_fingerprint_") as tmp:
        model_dir = Path(tmp) / "model"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}
        command = [sys.executable, "-m", "hf_mtl.cli", "quickstart", "--output-dir", str(model_dir)]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(f"quickstart failed with exit code {result.returncode}")
        config = json.loads((model_dir / "config.json").read_text())
        config.pop("transformers_version", None)
        fingerprint = {
            "command": " ".join(command[1:]),
            "logs": _log_lines(result.stdout + "\n" + result.stderr),
            "weights": _tensor_hashes(model_dir / "model.safetensors"),
            "config": config,
        }
    Path(out).write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")
    print(f"{len(fingerprint['logs'])} log lines, {len(fingerprint['weights'])} tensors -> {out}")
    return fingerprint


def compare(a_path: str, b_path: str) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    problems = []
    if len(a["logs"]) != len(b["logs"]):
        problems.append(f"log lines: {len(a['logs'])} vs {len(b['logs'])}")
    for i, (x, y) in enumerate(zip(a["logs"], b["logs"])):
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                problems.append(f"log line {i} {key}: {x.get(key)!r} vs {y.get(key)!r}")
    for name in sorted(set(a["weights"]) | set(b["weights"])):
        if a["weights"].get(name) != b["weights"].get(name):
            problems.append(f"tensor {name}: {a['weights'].get(name)} vs {b['weights'].get(name)}")
    if a["config"] != b["config"]:
        keys = sorted(k for k in set(a["config"]) | set(b["config"]) if a["config"].get(k) != b["config"].get(k))
        problems.append(f"config.json differs in {keys}")
    logged = sum(len(x) for x in a["logs"])
    if problems:
        print(f"{len(problems)} difference(s):")
        print("\n".join(f"  {p}" for p in problems[:50]))
        return 1
    print(f"bit-identical: {len(a['logs'])} log lines ({logged} values), {len(a['weights'])} tensors, config.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="train the quickstart and write its fingerprint")
    run_parser.add_argument("--out", required=True)
    compare_parser = sub.add_parser("compare", help="compare two fingerprints")
    compare_parser.add_argument("a")
    compare_parser.add_argument("b")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    raise SystemExit(main())
