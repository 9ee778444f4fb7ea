"""promptlearn: cloze-style prompt learning (PET/PVP, LM-BFF, P-tuning) for few-shot text classification."""

from .backbone import ModelLoadError, load_backbone, unwrap
from .data import Batches, PromptCollator, encode_dataset, make_loader
from .inference import infer, predict_scores, score_dataset
from .metrics import compute_metrics
from .prompt_model import PromptModel, PromptOutput
from .sampler import sample_few_shot
from .serialization import load_prompt_model, predict, save_prompt_model
from .soft_prompt import DeepPrompt, SoftPrompt, build_soft_prompt
from .spec import ModelSpec, build_model
from .strategies import Strategy, get_strategy, register_strategy
from .task import load_task
from .template import Template, TemplateError
from .verbalizers import (BaseVerbalizer, ManualVerbalizer, Verbalizer, VerbalizerError, build_verbalizer,
                          register_verbalizer)

__version__ = "0.2.0"

__all__ = [
    "Template", "TemplateError", "Verbalizer", "ManualVerbalizer", "BaseVerbalizer", "VerbalizerError",
    "register_verbalizer", "build_verbalizer", "PromptModel", "PromptOutput", "SoftPrompt", "DeepPrompt",
    "build_soft_prompt", "ModelSpec", "build_model", "Strategy", "get_strategy", "register_strategy",
    "save_prompt_model", "load_prompt_model", "predict", "load_backbone", "unwrap", "ModelLoadError", "load_task",
    "sample_few_shot", "encode_dataset", "make_loader", "Batches", "PromptCollator", "infer", "predict_scores",
    "score_dataset", "compute_metrics",
]
