"""CONTRIBUTING.md's worked example runs as written (every ```python block, in order, from the repository root)."""

import re
import subprocess
import sys

from conftest import ROOT, needs_data, needs_mini_mlm

pytestmark = [needs_data, needs_mini_mlm]


def test_contributing_worked_example_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "CONTRIBUTING.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks).replace("/tmp/weighted-words-example", str(tmp_path / "saved")))
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'type': 'weighted_words'" in proc.stdout and "learned word weights" in proc.stdout
    assert (tmp_path / "saved" / "verbalizer.safetensors").is_file()
    assert not (tmp_path / "saved" / "lm").exists()
