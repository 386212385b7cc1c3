"""Rasa's own checks: the training data validates, and the test stories come out as written."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.train import ROOT, train

RASA = str(Path(sys.executable).parent / "rasa")
ENV = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
# Rasa 3.6 reports these about any project with forms and a retrieval intent.
KNOWN_FALSE_ALARMS = (re.compile(r"The utterance 'utter_ask_\w+' is not used in any story or rule"),
                      re.compile(r"duplicated intents have been found across multiple domain files: faq"))


def uttered_by_actions() -> set[str]:
    """Responses that custom actions utter by name (utter_ok for a yes), so no rule needs to."""
    return {name for f in (ROOT / "actions").glob("*.py")
            for name in re.findall(r'"(utter_\w+)"', f.read_text(encoding="utf-8"))}


def test_training_data_validates_clean():
    result = subprocess.run([RASA, "data", "validate", "--domain", "domain.yml", "--data", "data/nlu",
                             "data/rules.yml"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    by_actions = uttered_by_actions()
    warnings = [line for line in (result.stdout + result.stderr).splitlines()
                if ("UserWarning" in line or "ERROR" in line) and not any(p.search(line) for p in KNOWN_FALSE_ALARMS)
                and not any(f"'{name}' is not used" in line for name in by_actions)]
    assert warnings == []


@pytest.mark.e2e
def test_stories_as_written(tmp_path):
    result = subprocess.run([RASA, "test", "core", "--model", str(train(quiet=True)), "--stories", "tests/stories",
                             "--out", str(tmp_path), "--fail-on-prediction-errors"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True)
    failed = (tmp_path / "failed_test_stories.yml")
    assert result.returncode == 0, (failed.read_text() if failed.exists() else "") + result.stdout[-3000:]
