"""NLU quality on the held-out split: intents, entities and out-of-domain fallback.

    python bench/nlu_quality.py                     # train a fresh model into a temp dir, then evaluate
    python bench/nlu_quality.py --model models/     # newest model in models/, no training
    python bench/nlu_quality.py --model models/jiaojing-<hash>.tar.gz [--test-dir data/test]

Trains from the same inputs as scripts/train.py (config.yml, domain.yml, data/nlu, data/rules.yml,
data/stories.yml), never from data/test. Parses every example of data/test/*.yml except
out_of_domain.yml and prints accuracy, macro-F1 (over the gold intents), per-intent scores, accuracy
per test file, the top confusions and per-type entity scores, with 90% bootstrap intervals for
macro-F1 and each intent's F1 (how far they could move on another split of the same size); then the
fallback rate on out_of_domain.yml. Retrieval intents are scored by their full name (faq/pay_fine),
taken from the ResponseSelector's output when there is one. A predicted entity matches a gold one
when the types are equal and the values are equal after nlu.normalise.normalise() (and
normalise_plate for plates). Targets are reported as met/NOT met; the exit status is 0 either way.
The full report goes to bench/results/nlu_quality-<unix time>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Optional

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actions.records.plates import normalise_plate  # noqa: E402
from nlu.normalise import normalise  # noqa: E402

OOD_FILE = "out_of_domain.yml"
FALLBACK_INTENTS = {"out_of_scope", "nlu_fallback"}
TARGETS = {"macro_f1": 0.95, "plate_f1": 0.98, "min_intent_f1": 0.90, "ood_fallback_rate": 0.90}


# ---------------------------------------------------------------- metrics (pure, tested)

def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_value(entity: str, value) -> str:
    text = normalise(str(value).strip())
    return normalise_plate(text) if entity == "plate" else text


def entity_counts(gold: list[dict], predicted: list[dict]) -> dict[str, Counter]:
    """Per entity type: tp, fp, fn for one example (values compared as multisets)."""
    gold_values = Counter((e["entity"], entity_value(e["entity"], e["value"])) for e in gold)
    # Two extractors finding the same thing at the same place count once.
    unique = {(e["entity"], entity_value(e["entity"], e["value"]), e.get("start"), e.get("end"))
              for e in predicted}
    pred_values = Counter((entity, value) for entity, value, _, _ in unique)
    hits = gold_values & pred_values
    counts: dict[str, Counter] = {}
    for kind, bag in (("tp", hits), ("fp", pred_values - hits), ("fn", gold_values - hits)):
        for (entity, _), n in bag.items():
            counts.setdefault(entity, Counter())[kind] += n
    return counts


def entity_report(pairs: list[tuple[list[dict], list[dict]]]) -> dict[str, dict]:
    totals: dict[str, Counter] = {}
    for gold, predicted in pairs:
        for entity, counts in entity_counts(gold, predicted).items():
            totals.setdefault(entity, Counter()).update(counts)
    report = {}
    for entity, c in sorted(totals.items()):
        p, r, f = prf(c["tp"], c["fp"], c["fn"])
        report[entity] = {"precision": p, "recall": r, "f1": f, "support": c["tp"] + c["fn"],
                          "predicted": c["tp"] + c["fp"]}
    return report


def intent_report(gold: list[str], predicted: list[str]) -> dict:
    """Accuracy, macro-F1 over the gold intents, per-intent scores (F1 ascending), confusions."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels = sorted(set(gold))
    if not labels:
        return {"accuracy": None, "macro_f1": None, "per_intent": [], "confusions": []}
    p, r, f, s = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    per_intent = sorted(({"intent": label, "precision": float(p[i]), "recall": float(r[i]),
                          "f1": float(f[i]), "support": int(s[i])} for i, label in enumerate(labels)),
                        key=lambda row: (row["f1"], row["intent"]))
    confusions = Counter((g, pr) for g, pr in zip(gold, predicted) if g != pr).most_common(15)
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(sum(f) / len(f)), "per_intent": per_intent,
            "confusions": [{"gold": g, "predicted": pr, "count": n} for (g, pr), n in confusions]}


def accuracy_by_file(rows: list[dict]) -> dict[str, dict]:
    """Intent accuracy of each test file: the blind files against the ones written with the training data."""
    totals: dict[str, Counter] = {}
    for row in rows:
        totals.setdefault(row["file"], Counter())["right" if row["gold"] == row["predicted"] else "wrong"] += 1
    return {name: {"accuracy": c["right"] / (c["right"] + c["wrong"]), "examples": c["right"] + c["wrong"]}
            for name, c in sorted(totals.items())}


def f1_by_label(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """F1 of every gold label in pairs."""
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, pr in pairs:
        if g == pr:
            tp[g] += 1
        else:
            fn[g] += 1
            fp[pr] += 1
    return {label: prf(tp[label], fp[label], fn[label])[2] for label in set(tp) | set(fn)}


def bootstrap_intervals(gold: list[str], predicted: list[str], rounds: int = 1000, level: float = 0.90,
                        seed: int = 0) -> dict:
    """How far macro-F1 and each intent's F1 could move on another test split of the same size:
    percentile intervals over resamples of the examples (with replacement)."""
    pairs = list(zip(gold, predicted))
    if not pairs:
        return {"macro_f1": None, "per_intent": {}}
    rng = random.Random(seed)
    macro, per_intent = [], {label: [] for label in set(gold)}
    for _ in range(rounds):
        f1 = f1_by_label(rng.choices(pairs, k=len(pairs)))
        macro.append(sum(f1.values()) / len(f1))
        for label, value in f1.items():
            per_intent[label].append(value)

    def interval(values: list[float]) -> list[float]:
        values = sorted(values)
        low = values[int((1 - level) / 2 * (len(values) - 1))]
        high = values[int((1 + level) / 2 * (len(values) - 1))]
        return [low, high]

    return {"level": level, "rounds": rounds, "macro_f1": interval(macro),
            "per_intent": {label: interval(v) for label, v in per_intent.items() if v}}


def predicted_label(parse: dict) -> str:
    """The intent, or the full retrieval intent (faq/pay_fine) when the ResponseSelector gave one."""
    intent = (parse.get("intent") or {}).get("name") or "None"
    selector = parse.get("response_selector") or {}
    for key in (intent, "default"):
        key_found = ((selector.get(key) or {}).get("response") or {}).get("intent_response_key")
        if key_found and key_found.split("/")[0] == intent:
            return key_found
    return intent


def target_line(name: str, value: Optional[float], target: float, percent: bool = False) -> dict:
    fmt = (lambda x: f"{100 * x:.1f}%") if percent else (lambda x: f"{x:.3f}")
    met = value is not None and value >= target
    shown = "not measured" if value is None else fmt(value)
    print(f"  {name} ≥ {fmt(target)}: {shown}  {'met' if met else 'NOT met'}")
    return {"value": value, "target": target, "met": met}


# ---------------------------------------------------------------- model and data

def train_model(out_dir: Path) -> tuple[Path, float]:
    data = [str(ROOT / "data" / "nlu"), str(ROOT / "data" / "rules.yml")]
    if (ROOT / "data" / "stories.yml").exists():
        data.append(str(ROOT / "data" / "stories.yml"))
    cmd = [str(Path(sys.executable).parent / "rasa"), "train", "--config", "config.yml",
           "--domain", "domain.yml", "--data", *data, "--out", str(out_dir)]
    # A cache of its own, so the time is that of training from scratch.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RASA_CACHE_DIRECTORY": str(out_dir / "cache")}
    log = out_dir / "train.log"
    print(f"training into {out_dir} (takes a few minutes)...", flush=True)
    started = time.monotonic()
    with open(log, "w") as fh:
        result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - started
    models = sorted(out_dir.glob("*.tar.gz"))
    if result.returncode != 0 or not models:
        lines = [line for line in log.read_text(errors="replace").replace("\r", "\n").splitlines()
                 if line.strip() and not line.startswith(("Epochs:", "Processed"))]
        print("\n".join(lines[-25:]), file=sys.stderr)
        raise SystemExit(f"training failed after {elapsed:.0f} s (log above)")
    return models[-1], elapsed


def load_examples(test_dir: Path) -> tuple[list[dict], list[dict], list[str]]:
    """Held-out examples and out-of-domain examples, as dicts; files that fail to load are skipped."""
    from rasa.shared.nlu.training_data.loading import load_data

    examples, ood, files = [], [], []
    for path in sorted(test_dir.glob("*.yml")):
        try:
            messages = [m for m in load_data(str(path)).nlu_examples
                        if m.get("text") and m.get("intent")]
        except Exception as exc:  # files are still being written by others
            print(f"WARNING: skipping {path.name}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        files.append(f"{path.name} ({len(messages)})")
        for m in messages:
            gold = m.get("intent_response_key") or m.get("intent")
            row = {"file": path.name, "text": m.get("text"), "gold": gold,
                   "gold_entities": [{"entity": e["entity"], "value": e["value"]}
                                     for e in m.get("entities") or []]}
            (ood if path.name == OOD_FILE else examples).append(row)
    return examples, ood, files


async def parse_all(agent, rows: list[dict]) -> None:
    for row in rows:
        parse = await agent.parse_message(row["text"])
        intent = parse.get("intent") or {}
        row.update(predicted=predicted_label(parse), intent=intent.get("name"),
                   confidence=intent.get("confidence"))
        row["entities"] = [{k: e.get(k) for k in ("entity", "value", "start", "end", "extractor")}
                           for e in parse.get("entities") or []]


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="model .tar.gz, or a directory (newest model in it)")
    parser.add_argument("--test-dir", type=Path, default=ROOT / "data" / "test")
    args = parser.parse_args()

    import logging
    import warnings
    warnings.filterwarnings("ignore")
    from rasa.utils.log_utils import configure_structlog
    configure_structlog(logging.WARNING)
    import jieba
    jieba.setLogLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="nlu-quality-") as tmp:
        train_seconds = None
        if args.model is None:
            model, train_seconds = train_model(Path(tmp))
        elif args.model.is_dir():
            from rasa.model import get_local_model
            model = Path(get_local_model(str(args.model)))
        else:
            model = args.model
        examples, ood, files = load_examples(args.test_dir)

        from rasa.core.agent import Agent
        started = time.monotonic()
        agent = Agent.load(str(model))
        load_seconds = time.monotonic() - started
        started = time.monotonic()
        asyncio.run(parse_all(agent, examples + ood))
        parse_ms = 1000 * (time.monotonic() - started) / max(1, len(examples) + len(ood))

    print(f"\nmodel: {model}\ntrain time: "
          + ("not measured" if train_seconds is None else f"{train_seconds:.1f} s"))
    print(f"model load: {load_seconds:.1f} s, parse: {parse_ms:.1f} ms/message")
    print(f"test files: {', '.join(files) or 'none'}\nexamples: {len(examples)}")

    gold, predicted = [r["gold"] for r in examples], [r["predicted"] for r in examples]
    intents = intent_report(gold, predicted)
    # With a dozen examples per intent, one example moves an intent's F1 by about 0.04.
    spread = bootstrap_intervals(gold, predicted)
    intents["intervals"] = spread
    if intents["accuracy"] is not None:
        low, high = spread["macro_f1"]
        print(f"intent accuracy: {intents['accuracy']:.3f}   macro-F1: {intents['macro_f1']:.3f}"
              f" [90%: {low:.3f}–{high:.3f}]")
        print(f"\n{'intent':<28}{'prec':>7}{'recall':>8}{'F1':>7}{'support':>9}   F1 90% interval")
        for row in intents["per_intent"]:
            low, high = spread["per_intent"].get(row["intent"], [row["f1"], row["f1"]])
            print(f"{row['intent']:<28}{row['precision']:>7.3f}{row['recall']:>8.3f}"
                  f"{row['f1']:>7.3f}{row['support']:>9}   {low:.3f}–{high:.3f}")
        intents["by_file"] = accuracy_by_file(examples)
        print("\naccuracy by file: " + ", ".join(f"{name} {row['accuracy']:.3f}"
                                               for name, row in intents["by_file"].items()))
        print("\ntop confusions (gold → predicted: count)")
        for c in intents["confusions"]:
            print(f"  {c['gold']} → {c['predicted']}: {c['count']}")

    entities = entity_report([(r["gold_entities"], r["entities"]) for r in examples])
    print(f"\n{'entity':<20}{'prec':>7}{'recall':>8}{'F1':>7}{'support':>9}{'predicted':>11}")
    for name, e in entities.items():
        print(f"{name:<20}{e['precision']:>7.3f}{e['recall']:>8.3f}{e['f1']:>7.3f}"
              f"{e['support']:>9}{e['predicted']:>11}")

    print("\ntargets")
    lowest = intents["per_intent"][0] if intents["per_intent"] else None
    plate = entities.get("plate")
    targets = {
        "macro_f1": target_line("macro-F1", intents["macro_f1"], TARGETS["macro_f1"]),
        "plate_f1": target_line("plate entity F1", plate["f1"] if plate and plate["support"] else None,
                                TARGETS["plate_f1"]),
        "min_intent_f1": target_line(f"lowest intent F1 ({lowest['intent'] if lowest else '-'})",
                                     lowest["f1"] if lowest else None, TARGETS["min_intent_f1"]),
    }
    if lowest and lowest["intent"] in spread["per_intent"]:
        low, high = spread["per_intent"][lowest["intent"]]
        below = sum(row["f1"] < TARGETS["min_intent_f1"] for row in intents["per_intent"])
        print(f"    (its 90% interval {low:.3f}–{high:.3f}; {below} intent(s) below {TARGETS['min_intent_f1']:.2f})")

    print(f"\nout-of-domain ({OOD_FILE}): {len(ood)} examples")
    caught = sum(r["intent"] in FALLBACK_INTENTS for r in ood)
    rate = caught / len(ood) if ood else None
    targets["ood_fallback_rate"] = target_line("fallback rate", rate, TARGETS["ood_fallback_rate"], True)
    misrouted = [{"text": r["text"], "predicted": r["predicted"], "confidence": r["confidence"]}
                 for r in ood if r["intent"] not in FALLBACK_INTENTS]
    for m in misrouted:
        print(f"  misrouted: {m['text']} → {m['predicted']} ({m['confidence'] or 0:.2f})")

    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"nlu_quality-{int(time.time())}.json"
    out.write_text(json.dumps({
        "model": str(model), "train_seconds": train_seconds, "load_seconds": load_seconds,
        "parse_ms_per_message": parse_ms, "test_dir": str(args.test_dir), "test_files": files,
        "examples": len(examples), **intents, "entities": entities, "targets": targets,
        "out_of_domain": {"examples": len(ood), "fallback_rate": rate, "misrouted": misrouted},
        "predictions": examples + ood,
    }, ensure_ascii=False, indent=1))
    print(f"\nreport: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
