"""Extension points: a verbalizer type and a strategy registered from outside the package run through the CLI."""

import ast
import json
import sys

import pytest
import torch

from promptlearn import PromptModel, Template, build_verbalizer
from promptlearn.data import PromptCollator
from promptlearn.strategies import STRATEGIES
from promptlearn.verbalizers import VERBALIZERS

from conftest import PLUGINS, ROOT, cli, tiny_mlm


@pytest.fixture
def toy_plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    import toy_plugin  # noqa: F401 - registers toy_head and toy_head_only

    return sys.modules["toy_plugin"]


def test_mask_hidden_verbalizer_gets_the_head_input_at_the_mask(toy_plugin, bert_tokenizer):
    """A `mask_hidden` verbalizer receives exactly what the LM head's output projection sees at the mask."""
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{text_a|shortenable} It was {mask} .", bert_tokenizer, max_length=32)
    verbalizer = build_verbalizer({"type": "toy_head"}, bert_tokenizer, labels=["neg", "pos"], mlm=mlm)
    with torch.no_grad():
        verbalizer.head.weight.normal_()
    model = PromptModel(mlm, template, verbalizer).eval()
    rows = [{"text_a": "the movie was great"}, {"text_a": "a boring plot and bad acting , really awful"}]
    batch = PromptCollator(bert_tokenizer.pad_token_id)([template.encode(r) for r in rows])
    seen = []
    hook = mlm.get_output_embeddings().register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    with torch.no_grad():
        mlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"])  # the reference: a full forward, head input at every position
        hook.remove()
        out = model(**batch)
    ref = seen[0][torch.arange(2), batch["mask_pos"]]
    torch.testing.assert_close(out.hidden, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.logits, torch.log_softmax(verbalizer.head(ref), -1), atol=1e-6, rtol=1e-6)
    assert out.token_logits is None and not model.restricted_head


def test_toy_strategy_and_verbalizer_from_a_plugin_run_through_the_cli(tiny_model_dirs, toy_data_root, tmp_path,
                                                                       toy_plugin):
    out, loss_log = tmp_path / "run", tmp_path / "losses.txt"
    proc = cli("--config-dir", PLUGINS / "conf", "+task=toy", "strategy=toy_head_only", "verbalizer=toy_head",
               "plugins=[toy_plugin]", f"model.name_or_path={tiny_model_dirs['bert']}", f"data_root={toy_data_root}",
               "save_model=true", "progress=false", f"hydra.run.dir={out}",
               env={"PYTHONPATH": str(PLUGINS), "TOY_LOSS_LOG": str(loss_log)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["strategy"] == "toy_head_only" and res["verbalizer_config"] == {"type": "toy_head", "hidden_size": 32}
    groups = res["train"]["group_params"]
    assert groups["verbalizer"] == 32 * 2 + 2 and groups["lm"] == groups["prompt"] == groups["adapter"] == 0
    assert res["train"]["learning_rates"] == {"verbalizer": 0.05}
    assert loss_log.read_text().count("loss") == 6  # the plugin's own loss ran once per step (6 steps, accum 1)
    # its parameters trained, were saved, and the saved spec rebuilds the model with the plugin loaded
    from safetensors.torch import load_file

    head = load_file(str(out / "model" / "verbalizer.safetensors"))
    assert head["head.weight"].abs().sum() > 0
    loaded = PromptModel.from_pretrained(str(out / "model"))
    assert type(loaded.verbalizer).__name__ == "ToyHead" and loaded.spec.strategy == "toy_head_only"
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    from datasets import Dataset  # noqa: F401 - the test split is re-read through the task loader

    from omegaconf import OmegaConf

    from promptlearn.serialization import predict
    from promptlearn.task import load_task

    task = load_task(OmegaConf.load(PLUGINS / "conf" / "task" / "toy.yaml"), data_root=toy_data_root)
    again = predict(loaded, [{"text_a": t} for t in task.splits["test"]["text_a"]])
    assert [task.labels.index(p["label"]) for p in again] == [p["pred"] for p in preds]


def test_unknown_types_list_what_is_registered():
    from promptlearn.strategies import get_strategy
    from promptlearn.verbalizers import VerbalizerError, get_verbalizer_class

    with pytest.raises(ValueError, match=r"unknown strategy 'nope'.*fixed_lm.*plugins="):
        get_strategy({"name": "nope"})
    with pytest.raises(VerbalizerError, match=r"unknown verbalizer type 'nope'.*manual"):
        get_verbalizer_class("nope")
    assert {"tuning_free", "fixed_lm", "fixed_prompt", "prompt_lm", "finetune"} <= set(STRATEGIES)
    assert "manual" in VERBALIZERS


FAMILY_DIRS = ("strategies", "verbalizers", "adapters")
MODULES = sorted(str(p.relative_to(ROOT / "promptlearn")) for p in (ROOT / "promptlearn").rglob("*.py")
                 if p.parent.name not in FAMILY_DIRS)


@pytest.mark.parametrize("module", MODULES)
def test_no_strategy_or_verbalizer_names_outside_their_registries(module):
    """Code outside promptlearn/strategies, promptlearn/verbalizers and promptlearn/adapters never branches on a
    member's name.

    (``_upgrade_*`` functions translate an old artifact format into today's names, and are exempt.)
    """
    tree = ast.parse((ROOT / "promptlearn" / module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("_upgrade"):
            node.body = []
    from promptlearn.adapters import ADAPTERS

    names = set(STRATEGIES) | set(VERBALIZERS) | set(ADAPTERS)
    if module == "template.py":  # the template language's own piece kinds ({soft} tokens), not the `soft` verbalizer
        names -= {"text", "field", "mask", "soft", "sep"}
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert not [s for s in literals if s in names], f"{module} names a strategy/verbalizer type"
