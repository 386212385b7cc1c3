"""Train the Rasa model unless one trained from the same inputs exists.

    python scripts/train.py        # prints the model's path

The model is named by a hash of everything that shapes it: domain, config, training data, the
custom NLU components and the versions of the packages that train it (adding a channel's SDK
to the lock does not retrain).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ["domain.yml", "config.yml", "data/nlu", "data/rules.yml",
          "data/stories.yml", "nlu"]


# Locked packages whose versions change what training produces.
TRAINING_PACKAGES = ("rasa", "tensorflow", "tensorflow-cpu", "numpy", "scikit-learn", "scipy", "jieba",
                     "opencc-python-reimplemented", "rasa-sdk")


def training_packages() -> bytes:
    lock = ROOT / "requirements.lock"
    lines = lock.read_text().splitlines() if lock.exists() else []
    pins = sorted(line.strip() for line in lines if line.split("==")[0].strip() in TRAINING_PACKAGES)
    return "\n".join(pins).encode()


def input_hash() -> str:
    digest = hashlib.sha256()
    digest.update(training_packages())
    for name in INPUTS:
        path = ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else ([path] if path.exists() else [])
        for f in files:
            digest.update(str(f.relative_to(ROOT)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def model_path() -> Path:
    return ROOT / "models" / f"jiaojing-{input_hash()}.tar.gz"


def train(quiet: bool = False) -> Path:
    target = model_path()
    if target.exists():
        if not quiet:
            print(f"model: {target.relative_to(ROOT)} (inputs unchanged, reused)", file=sys.stderr)
        return target
    print(f"model: training {target.name} (takes a few minutes)...", file=sys.stderr)
    started = time.monotonic()
    training_data = [str(ROOT / "data" / "nlu"), str(ROOT / "data" / "rules.yml")]
    if (ROOT / "data" / "stories.yml").exists():
        training_data.append(str(ROOT / "data" / "stories.yml"))
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT)}
    # Trained under a temporary name and renamed when complete: an interrupted run leaves no model.
    partial = target.with_name(target.name.replace(".tar.gz", f"-partial-{os.getpid()}.tar.gz"))
    cmd = [str(Path(sys.executable).parent / "rasa"), "train", "--config", "config.yml",
           "--domain", "domain.yml", "--data", *training_data, "--out", "models",
           "--fixed-model-name", partial.name.removesuffix(".tar.gz")]
    log = ROOT / "var" / "log" / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if result.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"model: training failed (full log: {log})")
    partial.rename(target)
    print(f"model: trained in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return target


if __name__ == "__main__":
    print(train())
