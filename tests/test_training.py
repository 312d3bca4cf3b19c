"""Fine-tuning: `answerdesk train` on the real bundled model, `train make-data` with real retrieval,
and the answer metrics of `eval answers`."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.cli import main
from bot import REFUSAL
from bot.answer_eval import answer_cases, summarize, token_f1
from bot.grounded_chats import GroundedCase
from engine import GenerationParams, LocalModel, generate
from engine.training import read_chats
from knowledge import FaqEntry, Hit, write_entries
from tests.conftest import MODEL_CACHE

GATE = [
    ("What is the gate code?", "The gate code is 4417, valid until Sunday."),
    ("gate code please", "The gate code is 4417, valid until Sunday."),
    ("When does the office open?", "The office opens at 07:30 on weekdays."),
    ("office opening time?", "The office opens at 07:30 on weekdays."),
    ("Can I pay with cash?", "Cash is accepted at the front desk only."),
    ("do you take cash", "Cash is accepted at the front desk only."),
]


def write_chats(path: Path, pairs: list[tuple[str, str]]) -> Path:
    system = {"role": "system", "content": "You are the assistant of Kestrel Storage."}
    lines = [
        json.dumps(
            {
                "messages": [
                    system,
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
        for question, answer in pairs
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str, tmp_path: Path) -> None:
    monkeypatch.setenv("ANSWERDESK_REDIS_URL", redis_url)
    monkeypatch.setenv("ANSWERDESK_REDIS_PREFIX", prefix)
    monkeypatch.setenv("ANSWERDESK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANSWERDESK_MODEL_CACHE_DIR", str(MODEL_CACHE))


@pytest.mark.usefixtures("cli_env")
async def test_a_tiny_qlora_adapter_trains_loads_and_changes_the_reply(tmp_path: Path) -> None:
    data = write_chats(tmp_path / "chats.jsonl", GATE)
    held_out = write_chats(tmp_path / "eval.jsonl", GATE[::2])
    out = tmp_path / "adapter"
    args = ["train", "--data", str(data), "--eval-data", str(held_out), "--out", str(out)]
    args += ["--quant", "nf4", "--layers", "8", "--rank", "4", "--steps", "20", "--lr", "5e-3"]
    args += ["--batch-size", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["steps"] == 20 and metrics["train_chats"] == 6
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"] / 2
    assert (out / "adapter_model.safetensors").is_file()
    card = (out / "MODEL_CARD.md").read_text()
    assert "nf4" in card and "rank 4" in card
    assert json.loads((out / "metrics.json").read_text())["steps"] == 20

    model = LocalModel.load(None, MODEL_CACHE, adapters={"tiny": out})
    messages = write_chats(tmp_path / "q.jsonl", GATE[:1])
    prompt = read_chats(messages)[0][:-1]
    greedy = GenerationParams(max_new_tokens=16, repetition_penalty=1.0)
    try:
        base = await generate(model, prompt, greedy)
        tuned = await generate(model, prompt, replace(greedy, adapter="tiny"))
    finally:
        await model.close()
    assert tuned != base
    assert "4417" in tuned  # it learnt the answer it was trained on


def test_train_names_the_bad_line_and_writes_nothing(tmp_path: Path) -> None:
    data = write_chats(tmp_path / "chats.jsonl", GATE[:2])
    data.write_text(data.read_text() + '{"messages": [{"role": "user", "content": "hi"}]}\n')
    out = tmp_path / "adapter"
    result = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(out)])
    assert result.exit_code != 0
    assert "chats.jsonl:3" in result.output and "assistant" in result.output
    assert not out.exists()


KB = [
    FaqEntry(
        "locker",
        "Can I get a parcel delivered to a locker?",
        "Yes. Choose a pick-up point at checkout and enter the locker number.",
        ("deliver to a parcel locker", "locker delivery possible?"),
    ),
    FaqEntry(
        "returns",
        "How do I return an item?",
        "Print the return label from your account and drop the parcel at any post office "
        "within 30 days.",
        ("send something back", "return policy"),
    ),
    FaqEntry(
        "hours",
        "When is the shop open?",
        "Monday to Saturday, 9:00 to 18:00.",
        ("opening hours", "are you open on sunday"),
    ),
    FaqEntry(
        "payment",
        "Which payment methods do you accept?",
        "Visa, Mastercard, PayPal and bank transfer.",
        ("can I pay with paypal", "payment options"),
    ),
    FaqEntry(
        "shipping",
        "How long does shipping take?",
        "Standard shipping takes 2-4 business days.",
        ("delivery time", "when will my parcel arrive"),
    ),
]


@pytest.mark.usefixtures("cli_env")
def test_make_data_builds_grounded_chats_with_real_retrieval(tmp_path: Path) -> None:
    kb = tmp_path / "kb.jsonl"
    write_entries(kb, KB)
    out = tmp_path / "chats.jsonl"
    args = ["train", "make-data", "--kb", str(kb), "--business", "Pinecone", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--refusal-share", "0.4", "--seed", "3"])
    assert result.exit_code == 0, result.output

    chats = read_chats(out)  # the training command's own validation accepts every line
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(chats) == sum(len(e.texts) for e in KB) == 15
    by_id = {e.id: e for e in KB}
    refusals = 0
    for chat, record in zip(chats, records, strict=True):
        system, user, reply = chat
        entry = by_id[record["meta"]["entry"]]
        assert system["role"] == "system" and "Pinecone" in system["content"]
        assert REFUSAL in system["content"]  # the instruction names the sentence to refuse with
        assert system["content"].count("\nQ: ") == 3  # k = 3 entries of context
        assert user["content"].startswith("<customer>\n")
        assert user["content"].removeprefix("<customer>\n").removesuffix("\n</customer>") in (
            entry.texts
        )
        if record["meta"]["answerable"]:
            assert reply["content"] == entry.answer
            assert f"A: {entry.answer}" in system["content"]
        else:
            refusals += 1
            assert reply["content"] == REFUSAL
            assert entry.answer not in system["content"]  # taken out of the context
    assert 3 <= refusals <= 10


def case(question: str, gold: FaqEntry, context: list[FaqEntry], answerable: bool) -> GroundedCase:
    return GroundedCase(question, (gold,), tuple(Hit(e, 0.5) for e in context), answerable)


class ScriptedModel:
    """Replies fixed per (question, whether the gold entry is in the prompt): the metric test
    needs replies whose scores are known by hand."""

    name = "scripted"
    pending = 0

    def __init__(self, replies: dict[tuple[str, bool], str]) -> None:
        self.replies = replies

    async def stream(self, messages, params):  # type: ignore[no-untyped-def]
        question = messages[-1]["content"].split("\n")[1]
        answerable = any(
            f"A: {e.answer}" in messages[0]["content"] for e in KB if e.id in ("hours", "payment")
        )
        yield self.replies[(question, answerable)]

    async def close(self) -> None:
        pass


async def test_answer_metrics_on_a_hand_made_case() -> None:
    hours, payment, locker, returns, shipping = (
        next(e for e in KB if e.id == i)
        for i in ("hours", "payment", "locker", "returns", "shipping")
    )
    cases = [
        case("opening hours?", hours, [hours, locker], True),
        case("opening hours?", hours, [locker, returns], False),
        case("paypal ok?", payment, [payment, shipping], True),
        case("paypal ok?", payment, [shipping, returns], False),
    ]
    model = ScriptedModel(
        {
            ("opening hours?", True): "Monday to Saturday, 9:00 to 18:00.",  # F1 1
            ("opening hours?", False): REFUSAL,  # a right refusal
            # 4 of its 6 tokens are in the 6-token gold answer: F1 = 2/3; "7" is invented.
            ("paypal ok?", True): "Visa, Mastercard and PayPal, 7 days.",
            ("paypal ok?", False): "Call 555-0199 to pay by phone.",  # invented, no refusal
        }
    )
    scored = await answer_cases(cases, model, GenerationParams(), "Pinecone")  # type: ignore[arg-type]
    assert token_f1("Visa, Mastercard and PayPal, 7 days.", payment.answer) == pytest.approx(2 / 3)
    assert summarize(scored) == {
        "n": 2,
        "replies": 4,
        "token_f1": round((1 + 2 / 3) / 2, 4),
        "invented_fact_rate": 0.5,
        "refusal_rate_unanswerable": 0.5,
        "false_refusal_rate": 0.0,
    }
    assert [s.invented for s in scored] == [
        frozenset(),
        frozenset(),
        frozenset({"7"}),
        frozenset({"555-0199"}),
    ]
