"""promptlearn: cloze-style prompt learning (PET/PVP, LM-BFF, P-tuning) for few-shot text classification."""

from .data import PromptCollator, encode_dataset, make_loader
from .metrics import compute_metrics
from .prompt_model import PromptModel, PromptOutput, load_backbone
from .sampler import sample_few_shot
from .serialization import load_prompt_model, predict, save_prompt_model
from .soft_prompt import DeepPrompt, SoftPrompt, build_soft_prompt
from .task import load_task
from .template import Template, TemplateError
from .verbalizer import Verbalizer, VerbalizerError

__version__ = "0.1.0"

__all__ = [
    "Template", "TemplateError", "Verbalizer", "VerbalizerError", "PromptModel", "PromptOutput", "SoftPrompt",
    "DeepPrompt", "build_soft_prompt", "save_prompt_model", "load_prompt_model", "predict",
    "load_backbone", "load_task", "sample_few_shot", "encode_dataset", "make_loader", "PromptCollator",
    "compute_metrics",
]
