"""LoRA (PEFT) and BitFit as LM-tuning strategies: what trains, what is saved, what reloads."""

import json

import pytest
import torch
import torch.nn.functional as F

from promptlearn import ModelSpec, PromptModel, Template, Verbalizer, build_model
from promptlearn.backbone import unwrap
from promptlearn.errors import ConfigError, PromptlearnError
from promptlearn.serialization import load_prompt_model
from promptlearn.strategies import get_strategy, strategy_defaults

from conftest import PLUGINS, cli, tiny_mlm
from test_spec import _compose_toy
from test_trainer import few_shot


def run(model, strategy, steps=8):
    """Train on the toy rows with one dev evaluation at the end (so the final state is the one kept)."""
    from promptlearn.trainer import train

    s = get_strategy(strategy)
    s.cfg.update(batch_size=4, max_steps=steps, eval_every=steps)
    return train(model, few_shot(), s, dict(seed=7, progress=False), torch.device("cpu"))

peft = pytest.importorskip("peft")

TEXT = "{text_a} It was {mask}."
LORA = strategy_defaults("lora")["adapter"]


def _spec(model_dir, adapter, text=TEXT):
    return ModelSpec(base_model=str(model_dir), template={"text": text, "max_length": 32, "name": "t"},
                     verbalizer={"type": "manual", "label_words": {"neg": "bad", "pos": "great"}},
                     labels=["neg", "pos"], adapter=adapter)


def _eval_loss(model):
    few = few_shot().train
    tmpl = model.template
    from promptlearn.data import PromptCollator

    batch = PromptCollator(tmpl.tokenizer.pad_token_id)([tmpl.encode(r) for r in few])
    with torch.no_grad():
        logits = model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return float(F.cross_entropy(logits, torch.tensor(few["label"]))), logits


def _lm_state(model):
    """The LM's parameters by their names in the unwrapped transformers model (LoRA's base_layer names included)."""
    return {n: p.detach().clone() for n, p in unwrap(model.mlm).named_parameters()}


def _size(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.parametrize("kind", ["lora", "bitfit"])
def test_adapter_trains_and_only_its_parameters_change(kind, tiny_model_dirs):
    torch.manual_seed(0)
    model = build_model(_spec(tiny_model_dirs["bert"], LORA if kind == "lora" else {"type": "bitfit"}))
    before, (loss0, _) = _lm_state(model), _eval_loss(model)
    info = run(model, dict(name=kind, adapter_lr=5e-2), steps=10)
    loss1, _ = _eval_loss(model)
    assert loss1 < loss0 - 1e-3, (loss0, loss1)
    after = _lm_state(model)
    is_adapter = (lambda n: "lora_" in n) if kind == "lora" else (lambda n: n.rsplit(".", 1)[-1] == "bias")
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    frozen = [n for n in after if not is_adapter(n)]
    assert frozen and not changed & set(frozen)  # every other LM weight is bit-identical
    adapter_names = [n for n in after if is_adapter(n)]
    assert changed and changed <= set(adapter_names)
    n_adapter = sum(after[n].numel() for n in adapter_names)
    assert info["trainable_params"] == info["group_params"]["adapter"] == n_adapter
    assert info["total_params"] == sum(p.numel() for p in after.values())
    if kind == "lora":  # PEFT's own count agrees
        assert model.mlm.get_nb_trainable_parameters() == (n_adapter, info["total_params"])
        assert {n for n in changed if "lora_B" in n} == {n for n in adapter_names if "lora_B" in n}
    assert model.spec.adapter["type"] == kind and model.spec.trained == ["adapter"]


@pytest.mark.parametrize("kind", ["bert", "roberta", "albert", "electra", "distilbert"])
def test_lora_default_target_modules_per_architecture(kind, bert_tokenizer, roberta_tokenizer):
    tok = roberta_tokenizer if kind == "roberta" else bert_tokenizer
    model = PromptModel(tiny_mlm(kind, len(tok)), Template("{text_a} It was {mask} .", tok, max_length=32),
                        Verbalizer({"neg": "bad", "pos": "great"}, tok), adapter=LORA)
    targets = LORA["default_target_modules"][unwrap(model.mlm).config.model_type]
    assert model.spec.adapter["target_modules"] == targets and "default_target_modules" not in model.spec.adapter
    wrapped = {n.rsplit(".", 1)[-1] for n, m in unwrap(model.mlm).named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(targets)
    assert model.restricted_head and model(**_batch(model)).logits.shape == (2, 2)


def _batch(model):
    from promptlearn.data import PromptCollator

    return PromptCollator(model.template.tokenizer.pad_token_id)(
        [model.template.encode({"text_a": t}) for t in ("a good film", "the plot is boring")])


@pytest.mark.parametrize("kind", ["lora", "bitfit"])
def test_adapter_artifact_is_small_holds_no_lm_and_reloads_exactly(kind, tiny_model_dirs, tmp_path):
    torch.manual_seed(0)
    model = build_model(_spec(tiny_model_dirs["bert"], LORA if kind == "lora" else {"type": "bitfit"}))
    run(model, dict(name=kind, adapter_lr=2e-2), steps=4)
    saved = model.save_pretrained(str(tmp_path / "m"))
    cfg = json.loads((saved / "promptlearn.json").read_text())
    assert cfg["lm_saved"] is False and not (saved / "lm").exists() and cfg["spec"]["adapter"]["type"] == kind
    from safetensors.torch import load_file

    if kind == "lora":  # PEFT's own format: PeftModel.from_pretrained(base, dir/adapter) reads it too
        assert cfg["files"]["adapter"] == "adapter" and (saved / "adapter" / "adapter_config.json").is_file()
        state = load_file(str(saved / "adapter" / "adapter_model.safetensors"))
        assert state and all("lora_" in k for k in state)
    else:
        state = load_file(str(saved / cfg["files"]["adapter"]))
        assert state and all(k.endswith("bias") for k in state)
    lm_params = sum(p.numel() for p in unwrap(model.mlm).parameters())
    assert sum(t.numel() for t in state.values()) < 0.2 * lm_params  # the adapter, not the LM's weights
    weights = sum(f.stat().st_size for f in saved.rglob("*.safetensors"))
    assert weights < 0.2 * (tiny_model_dirs["bert"] / "model.safetensors").stat().st_size
    loaded = load_prompt_model(saved)
    assert loaded.spec.adapter == model.spec.adapter
    _, a = _eval_loss(model)
    _, b = _eval_loss(loaded)
    assert torch.equal(a, b)
    assert loaded.predict(["a good film", "boring"]) == model.predict(["a good film", "boring"])


def test_lora_with_soft_prompt_trains_both_and_reloads(tiny_model_dirs, tmp_path):
    torch.manual_seed(0)
    strategy = get_strategy({"name": "lora", "soft_prefix": 2, "adapter_lr": 2e-2, "prompt_lr": 2e-2})
    spec = strategy.adapt_spec(_spec(tiny_model_dirs["bert"], None), None)
    assert spec.template["text"].startswith("{soft*2}") and spec.adapter["type"] == "lora"
    model = build_model(spec)
    soft0, lm0 = model.soft_prompt.embedding.detach().clone(), _lm_state(model)
    info = run(model, strategy, steps=6)
    assert set(info["group_params"]) >= {"adapter", "prompt"} and info["group_params"]["prompt"] == soft0.numel()
    assert not torch.equal(model.soft_prompt.embedding, soft0)
    lm1 = _lm_state(model)
    assert any(not torch.equal(lm1[n], lm0[n]) for n in lm1 if "lora_B" in n)
    assert all(torch.equal(lm1[n], lm0[n]) for n in lm1 if "lora_" not in n)
    assert model.spec.trained == ["adapter", "prompt"]
    saved = model.save_pretrained(str(tmp_path / "m"))
    assert (saved / "prompt.safetensors").is_file() and (saved / "adapter").is_dir()
    loaded = load_prompt_model(saved)
    assert torch.equal(_eval_loss(loaded)[1], _eval_loss(model)[1])


def test_bad_adapter_options_are_one_line_before_training(tiny_model_dirs, toy_data_root, tmp_path):
    from promptlearn.run import run_experiment

    for over, needle in (({"strategy.adapter.target_modules": "[query,nope]"}, "'nope' is not a linear layer"),
                         ({"strategy.adapter.r": 0}, "strategy.adapter.r=0 is below its minimum 1"),
                         ({"+strategy.adapter.rank": 4}, "has no option 'rank'"),
                         ({"strategy.adapter.type": "ia3"}, "unknown adapter type 'ia3'")):
        cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root, strategy="lora",
                           **{"strategy.max_steps": 1, "strategy.k_shot": 2}, **over)
        with pytest.raises(ConfigError) as err:
            run_experiment(cfg, output_dir=tmp_path / "run")
        assert needle in str(err.value) and "fix:" in str(err.value) and "\n" not in str(err.value)
        assert not (tmp_path / "run" / "results.json").exists()
    cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root, strategy="finetune",
                       **{"strategy.k_shot": 2, "strategy.adapter": "{type: bitfit}"})
    with pytest.raises(ConfigError, match="adapters tune the masked LM of a prompt model"):
        run_experiment(cfg, output_dir=tmp_path / "run2")


def test_saving_gives_its_own_files_the_usual_mode_and_leaves_others_alone(tiny_model_dirs, tmp_path):
    """safetensors writes 0600; the files a save wrote get the mode its config file got, nothing else changes."""
    import os

    model = build_model(_spec(tiny_model_dirs["bert"], {"type": "bitfit"}))
    d = tmp_path / "m"
    d.mkdir()
    for name, mode in (("secret", 0o600), ("run.sh", 0o755)):
        (d / name).write_text("x")
        os.chmod(d / name, mode)
    model.save_pretrained(str(d))
    mode = (d / "promptlearn.json").stat().st_mode & 0o777
    written = json.loads((d / "promptlearn.json").read_text())["files"]
    assert mode != 0o600 and written and all((d / f).stat().st_mode & 0o777 == mode for f in written.values())
    assert (d / "secret").stat().st_mode & 0o777 == 0o600 and (d / "run.sh").stat().st_mode & 0o777 == 0o755


def test_adapter_models_do_not_share_a_base_lm(tiny_model_dirs, tmp_path):
    from promptlearn.multitask import MultiTaskModel

    model = build_model(_spec(tiny_model_dirs["bert"], {"type": "bitfit"}))
    with pytest.raises(ConfigError, match="adapter"):
        MultiTaskModel({"a": model})
    saved = model.save_pretrained(str(tmp_path / "m"))
    with pytest.raises(ConfigError, match="adapter"):
        MultiTaskModel.from_pretrained({"a": saved})
    with pytest.raises(PromptlearnError, match="adapter"):
        load_prompt_model(saved, mlm=tiny_mlm("bert", 60))


def test_cli_lora_save_model_writes_a_small_artifact_that_predicts(tiny_model_dirs, toy_data_root, tmp_path, capsys):
    run_dir = tmp_path / "task=toy,strategy=lora"  # a Hydra run folder's name: '=' in the path
    proc = cli("--config-dir", PLUGINS / "conf", "+task=toy", "strategy=lora", "save_model=true", "progress=false",
               f"model.name_or_path={tiny_model_dirs['bert']}", f"data_root={toy_data_root}", "strategy.k_shot=4",
               "strategy.max_steps=4", "strategy.eval_every=2", "strategy.batch_size=4", f"hydra.run.dir='{run_dir}'")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((run_dir / "results.json").read_text())
    assert "strategy lora: training" in proc.stdout and "lora r=8 alpha=16 dropout=0.1 on query,value" in proc.stdout
    assert f"saved model to {run_dir / 'model'}" in proc.stdout
    train = res["train"]
    assert train["trainable_params"] == train["group_params"]["adapter"] > 0
    assert res["spec"]["adapter"]["target_modules"] == ["query", "value"]
    saved = run_dir / "model"
    assert res["saved_model"]["bytes"] == _size(saved) and not (saved / "lm").exists()
    (tmp_path / "plain").write_text("x")  # every file of the artifact has a new file's mode (safetensors: 0600)
    assert {f.stat().st_mode & 0o777 for f in saved.rglob("*") if f.is_file()} == {(tmp_path / "plain").stat().st_mode & 0o777}
    loaded = load_prompt_model(saved)
    out = loaded.predict(["the movie was great", "awful plot"])
    assert [o["label"] for o in out] and all(abs(sum(o["probs"].values()) - 1) < 1e-5 for o in out)

    # the JSONL command line (its main, in this process) serves it on its own LM (it cannot share one):
    # `--model DIR` (the task of the run that saved it)
    from promptlearn.predict import main as predict_main

    def predict_cli(*args):
        capsys.readouterr()
        code = predict_main(list(args))
        return code, capsys.readouterr().err

    rows = [{"text_a": "the movie was great", "id": 1}, {"task": "toy", "text_a": "awful plot"}, {"text_b": "x"},
            {"task": "sst2", "text_a": "a"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = ["--model", str(saved), "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
           "--no-progress"]
    code, err = predict_cli(*cmd)
    assert code == 1 and "predicted 2 of 4 rows (toy: 2)" in err, err[-2000:]
    got = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [g["task"] for g in got[:2]] == ["toy", "toy"] and got[0]["id"] == 1
    for g, o in zip(got[:2], out):
        assert g["label"] == o["label"] and g["probs"] == pytest.approx(o["probs"], abs=1e-6)
    assert got[2]["error"].startswith("line 3: task 'toy' needs field 'text_a'")
    assert got[3]["error"].startswith("line 4: unknown task 'sst2'")
    # on another LM's weights it is refused (one line, exit 2), as a prompt on the shared path is
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    other = AutoModelForMaskedLM.from_pretrained(str(tiny_model_dirs["bert"]))
    with torch.no_grad():
        other.get_input_embeddings().weight.add_(0.01)
    other.save_pretrained(tmp_path / "other_lm")
    AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(tmp_path / "other_lm")
    code, err = predict_cli(*cmd, "--base-model", str(tmp_path / "other_lm"))
    assert code == 2 and "fingerprint" in err and "Traceback" not in err, err[-2000:]
    # with another model beside it, it is refused (one line, exit 2): the tasks would need two LMs
    code, err = predict_cli(*cmd, "--model", f"other={saved}")
    assert code == 2 and "adapter" in err and "Traceback" not in err
