"""The notebooks run top to bottom, with output checks.

The quickstart runs with mini-mlm + SST-2 when ../shared has them, and with the CI fallback (tiny random BERT +
in-memory sentences) when the model and data cannot be found.  The four research notebooks (template sensitivity,
learning curves, soft-prompt and verbalizer inspection) need mini-mlm and the data in ../shared: without them their
tests are skipped (the notebooks themselves stop with a clear error).  Nothing here checks mini-mlm's accuracy: only
that every step ran, the in-notebook equality checks passed (each prints a line after its asserts) and the plots
were drawn.

Same as ``python -m pytest --nbmake notebooks/*.ipynb`` (with output checks), but part of ``pytest``.
"""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, needs_data, needs_mini_mlm

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def run(path):
    """Execute a copy of the notebook (the file is not modified) with cwd = notebooks/; returns (all text output,
    the number of image/png outputs)."""
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    texts, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            texts.append(out.get("text", "") or data.get("text/markdown", "") or data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(texts), images


def execute(path):
    """Execute a copy of the notebook; returns all text output."""
    return run(path)[0]


def test_quickstart_runs(monkeypatch):
    monkeypatch.delenv("PROMPTLEARN_MODEL", raising=False)
    monkeypatch.delenv("PROMPTLEARN_DATA", raising=False)
    text = execute(NOTEBOOK)
    assert "fix: keep exactly one {mask}" in text  # the template error is shown
    assert "max |difference|" in text  # the no-magic check ran (it asserts)
    assert "This movie is {mask}." in text and "accuracy" in text
    assert "notebook ran in" in text


def test_quickstart_fallback_without_shared(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMPTLEARN_MODEL", str(tmp_path / "no-such-model"))
    monkeypatch.setenv("PROMPTLEARN_DATA", str(tmp_path / "no-such-data"))
    text = execute(NOTEBOOK)
    assert "falling back to a tiny random BERT" in text
    assert "no SST-2 data under" in text
    assert "max |difference|" in text


# ---------------------------------------------------------------------------------------------- research notebooks
# They need ../shared (mini-mlm and the task data); the numbers they print are never checked, only that each step ran.

@pytest.fixture
def shared_only(monkeypatch):
    """The notebooks' defaults: ../shared/models/mini-mlm and ../shared/data."""
    monkeypatch.delenv("PROMPTLEARN_MODEL", raising=False)
    monkeypatch.delenv("PROMPTLEARN_DATA", raising=False)


@needs_data
@needs_mini_mlm
def test_template_sensitivity_runs(shared_only):
    text, images = run(ROOT / "notebooks" / "template_sensitivity.ipynb")
    scored = re.search(r"(\d+) templates scored on (\d+) test sentences", text)
    assert scored and int(scored.group(1)) >= 10 and int(scored.group(2)) > 0, text[-3000:]
    n_templates = int(scored.group(1))
    assert f"scored {n_templates} templates on n = " in text  # the table has one row per template
    assert "same class scores as the CLI run for all" in text  # the shortcut == run_experiment check (asserts)
    assert "pet-yelp-0" in text and "content-free prior" in text
    assert "accuracy minus bias-only accuracy" in text
    assert images >= 1  # the accuracy-per-template plot
    assert "notebook ran in" in text


@needs_data
@needs_mini_mlm
def test_learning_curves_runs(shared_only):
    text, images = run(ROOT / "notebooks" / "learning_curves.ipynb")
    assert "every (strategy, K) point is in the table with 2 seeds" in text, text[-3000:]
    # report.markdown_table: one row per strategy and K, each with mean (std) over n=2 seeds
    for strategy in ("fixed_prompt", "fixed_lm/embedding", "finetune"):
        for k in (4, 8, 16, 32, 64):
            assert re.search(rf"\| {re.escape(strategy)} K={k} \| \d+\.\d \(\d+\.\d\) n=2 \|", text), (strategy, k)
    assert images >= 1  # the report's learning-curve plot
    assert "notebook ran in" in text


@needs_data
@needs_mini_mlm
def test_soft_prompt_inspection_runs(shared_only):
    text, images = run(ROOT / "notebooks" / "soft_prompt_inspection.ipynb")
    assert "soft-token check passed" in text, text[-3000:]  # printed after the inputs_embeds asserts
    assert text.count("PromptModel == raw MLM on inputs_embeds") == 4  # one per prompt: embedding x2, lstm, mlp
    assert "the shared LM is unchanged" in text
    assert "14 soft tokens inspected" in text  # 4 + 2 + 4 + 4, each with its nearest tokens
    assert "nearest 5 tokens (cosine)" in text
    assert images >= 1  # the norm plot
    assert "notebook ran in" in text


@needs_data
@needs_mini_mlm
def test_verbalizer_inspection_runs(shared_only):
    text, images = run(ROOT / "notebooks" / "verbalizer_inspection.ipynb")
    assert "per-word probabilities match the raw MLM for all" in text, text[-3000:]  # printed after the asserts
    assert "same class scores as the CLI run for all" in text
    for mode in ("none", "content_free", "support"):
        assert re.search(rf"{mode}: accuracy \d+\.\d%", text), mode
    assert "KPT words per class before refinement" in text and "own-class ratio" in text
    assert images >= 2  # the class x word heatmap and the calibration panels
    assert "notebook ran in" in text
