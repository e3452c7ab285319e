"""Token ids and labels of the reference stack beside deita-hf's, on the same rows and the same tokenizer.

Two steps, in two Python environments:

1. ``reference``, with the reference stack (transformers 4.35.1, tokenizers 0.14.1, trl 0.7.2, sentencepiece)
   and a checkout of hkust-nlp/deita: runs the reference's own code on the real data in ``../shared/data``
   and writes what it made to a JSON file:

   - the scorer prompts of the AlpacaEval pool encoded by ``AutoTokenizer`` on a folder laid out like the
     released scorers (``tokenizer.model`` only), against ``[bos] + sp.encode(prompt)``;
   - SFT: ``preprocess`` of ``src/deita/alignment/train.py`` (slow ``LlamaTokenizer``, ``use_fast=False``)
     on the pool's conversations, with right padding and with the left padding its Mistral path sets; and its
     98% split (``np.random.seed(0)``, ``np.random.permutation``);
   - DPO: ``preprocess`` of ``src/deita/alignment/dpo_train.py`` on the preference pairs, tokenized by trl
     0.7.2's ``DPODataCollatorWithPadding.tokenize_batch_element`` (``max_length`` 2048, ``max_prompt_length``
     512, ``keep_end``), as its ``DPOTrainer`` did.

2. ``compare``, with deita-hf's environment: makes deita-hf's ids and labels for the same rows (the SFT and DPO
   data paths of ``deita-hf sft`` / ``dpo`` through TRL) and prints what differs, with row counts: the figures
   of the parity table in ``docs/training.md``.

::

    /work/refvenv/bin/python benchmarks/reference_parity.py reference \\
        --deita-repo /path/to/hkust-nlp/deita --tokenizer-model /path/to/mistral/tokenizer.model --out ref.json
    python benchmarks/reference_parity.py compare --reference ref.json

The tokenizer is the real Mistral-7B-v0.1 SentencePiece model (``mistral_common/data/tokenizer.model.v1``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IGNORE = -100
# deita_hf/constants.py, read as text so that the reference environment needs no deita-hf import.
CONSTANTS = Path(__file__).resolve().parents[1] / "deita_hf" / "constants.py"


def _templates() -> tuple[str, str]:
    namespace: dict = {}
    text = CONSTANTS.read_text()
    for name in ("COMPLEXITY_PROMPT", "QUALITY_PROMPT"):
        match = re.search(rf"^{name} = \((.*?)^\)", text, re.S | re.M)
        exec(f"{name} = ({match.group(1)})", namespace)
    return namespace["COMPLEXITY_PROMPT"], namespace["QUALITY_PROMPT"]


def _pool() -> list[dict]:
    return [json.loads(line) for line in (DATA / "alpaca_eval_pool.jsonl").open()]


def _prefs() -> list[dict]:
    return [json.loads(line) for line in (DATA / "alpaca_eval_prefs.jsonl").open()]


def _tokenizer_folder(tokenizer_model: str, folder: Path, scorer_layout: bool) -> Path:
    """``tokenizer.model`` and a ``LlamaTokenizer`` config; with ``scorer_layout``, also the released scorers'
    ``added_tokens.json`` (``<pad>`` = 32000)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer_model, folder / "tokenizer.model")
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, **specials}
    if scorer_layout:
        specials["pad_token"] = "<pad>"
        config["pad_token"] = "<pad>"
        (folder / "added_tokens.json").write_text(json.dumps({"<pad>": 32000}))
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


# -- 1. the reference stack ---------------------------------------------------------------------------------------
def reference(args: argparse.Namespace) -> None:
    import numpy as np
    import sentencepiece
    import transformers
    from transformers import AutoTokenizer

    source = Path(tempfile.mkdtemp())
    for name in ("train.py", "dpo_train.py", "conversation.py"):
        text = subprocess.check_output(
            ["git", "-C", args.deita_repo, "show", f"HEAD:src/deita/alignment/{name}"], text=True
        )
        (source / name).write_text(text)
    sys.path.insert(0, str(source))
    import dpo_train
    import train
    from trl.trainer.utils import DPODataCollatorWithPadding

    sp = sentencepiece.SentencePieceProcessor(model_file=args.tokenizer_model)
    out: dict = {"versions": {"transformers": transformers.__version__}}

    # Scorer prompts: AutoTokenizer on the released scorers' layout, as the reference's Scorer loaded it.
    scorer_tokenizer = AutoTokenizer.from_pretrained(
        _tokenizer_folder(args.tokenizer_model, source / "scorer", scorer_layout=True)
    )
    complexity, quality = _templates()
    pool = _pool()
    turns = [(row["messages"][0]["content"], row["messages"][1]["content"]) for row in pool]
    out["scorer"] = {"tokenizer_class": type(scorer_tokenizer).__name__}
    for name, template in (("complexity", complexity), ("quality", quality)):
        prompts = [template.format(instruction=i, output=o) for i, o in turns]
        ids = scorer_tokenizer(prompts).input_ids
        out["scorer"][name] = {
            "prompts": len(prompts),
            "differ_from_sentencepiece": sum(a != [sp.bos_id(), *sp.encode(p)] for a, p in zip(ids, prompts)),
        }

    # SFT: train.py's preprocess with the slow tokenizer, as its train() loads it (model_max_length 2048).
    folder = _tokenizer_folder(args.tokenizer_model, source / "mistral", scorer_layout=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, model_max_length=2048, padding_side="right", use_fast=False)
    tokenizer.pad_token = tokenizer.unk_token
    sources = [[{"from": "human", "value": i}, {"from": "gpt", "value": o}] for i, o in turns]
    extra = {
        # A conversation that ends with a user turn nobody answered.
        "trailing_user_turn": [
            {"from": "human", "value": "Name a color."},
            {"from": "gpt", "value": "Blue."},
            {"from": "human", "value": "And another?"},
        ],
        # Answers that start with a digit or a newline.
        "digit_answer": [{"from": "human", "value": "How many legs has a cat?"}, {"from": "gpt", "value": "4 legs."}],
        "newline_answer": [{"from": "human", "value": "List two."}, {"from": "gpt", "value": "\n- a\n- b"}],
    }
    sft = {"rows": [], "extra": {}}
    for padding_side in ("right", "left"):
        tokenizer.padding_side = padding_side
        rows = []
        for start in range(0, len(sources), 200):
            data = train.preprocess(sources[start : start + 200], tokenizer, "vicuna_v1.1", True)
            for ids, labels, mask in zip(data["input_ids"], data["labels"], data["attention_mask"]):
                real = mask.bool()
                rows.append(
                    {
                        "input_ids": ids[real].tolist(),
                        "labels": labels[real].tolist(),
                        "trained_padding": int(((labels != IGNORE) & ~real).sum()),
                    }
                )
        if padding_side == "right":
            sft["rows"] = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
            for name, conversation in extra.items():
                data = train.preprocess([conversation], tokenizer, "vicuna_v1.1", True)
                real = data["attention_mask"][0].bool()
                sft["extra"][name] = {
                    "input_ids": data["input_ids"][0][real].tolist(),
                    "labels": data["labels"][0][real].tolist(),
                }
        else:
            sft["left_padding"] = {
                "rows": len(rows),
                "real_tokens_trained": sum(sum(label != IGNORE for label in r["labels"]) for r in rows),
                "padding_tokens_trained": sum(r["trained_padding"] for r in rows),
            }
    np.random.seed(0)
    permutation = np.random.permutation(len(pool))
    sft["train_indices"] = permutation[: int(len(permutation) * 0.98)].tolist()
    out["sft"] = sft

    # DPO: dpo_train.py's preprocess on ultrafeedback_binarized-shaped rows, then trl 0.7.2's tokenization.
    tokenizer.padding_side = "right"
    collator = DPODataCollatorWithPadding(
        tokenizer, max_length=2048, max_prompt_length=512, truncation_mode="keep_end", label_pad_token_id=IGNORE
    )
    dpo = []
    for row in _prefs():
        user = row["prompt"][-1]
        sample = {
            "prompt": user["content"],
            "messages": [user, row["chosen"][0]],
            "chosen": [user, row["chosen"][0]],
            "rejected": [user, row["rejected"][0]],
        }
        texts = dpo_train.preprocess(sample, conv_template="vicuna_v1.1")
        batch = collator.tokenize_batch_element(texts["prompt"], texts["chosen"], texts["rejected"])
        dpo.append({"text": texts, **{k: batch[k] for k in ("prompt_input_ids", "chosen_input_ids", "chosen_labels")}})
    out["dpo"] = dpo
    Path(args.out).write_text(json.dumps(out))
    print(f"wrote {args.out}")


# -- 2. deita-hf beside it ----------------------------------------------------------------------------------------
def _first_label(ids: list[int], labels: list[int]) -> int:
    return next(i for i, label in enumerate(labels) if label != IGNORE)


def compare(args: argparse.Namespace) -> None:
    import mistral_common
    import sentencepiece
    from datasets import Dataset, disable_caching
    from trl import DPOConfig, DPOTrainer, SFTTrainer

    from deita_hf.chat_template import load_tokenizer
    from deita_hf.embedding import vicuna_text
    from deita_hf.testing import tiny_causal_lm
    from deita_hf.training.data import to_messages_dataset, to_preference_dataset
    from deita_hf.training.sft import SFTConfig

    disable_caching()
    ref = json.loads(Path(args.reference).read_text())
    tokenizer_model = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    sp = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_model))
    print("reference stack:", ref["versions"])
    for name in ("complexity", "quality"):
        s = ref["scorer"][name]
        print(
            f"scorer {name}: {ref['scorer']['tokenizer_class']} ids differ from [bos] + sp.encode on "
            f"{s['differ_from_sentencepiece']} of {s['prompts']} prompts"
        )

    with tempfile.TemporaryDirectory() as tmp:
        folder = _tokenizer_folder(str(tokenizer_model), Path(tmp) / "mistral", scorer_layout=False)
        tokenizer = load_tokenizer(str(folder))
        tiny_causal_lm(tokenizer, architecture="mistral").save_pretrained(Path(tmp) / "model")
        model = str(Path(tmp) / "model")
        common = dict(output_dir=tmp, bf16=False, activation_checkpointing=False, use_cpu=True, report_to="none")

        # SFT
        pool = _pool()
        messages = to_messages_dataset(Dataset.from_list([{"messages": row["messages"]} for row in pool]))
        data = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=messages, processing_class=tokenizer)
        data = data.train_dataset
        ours = [(ids, labels) for ids, labels in zip(data["input_ids"], data["labels"])]
        theirs = [(r["input_ids"], r["labels"]) for r in ref["sft"]["rows"]]
        same_ids = [a[0] == b[0] for a, b in zip(ours, theirs)]
        same_labels = [a == b for a, b in zip(ours, theirs)]
        # A run of two or more spaces anywhere in the rendered text (messages, or a message's end and the template).
        spaces = [bool(re.search("  ", vicuna_text(row["messages"]))) for row in pool]
        answer_starts = [row["messages"][1]["content"][:1] for row in pool]
        first_token_rows = sum(
            1
            for (ids, labels), (rids, rlabels) in zip(ours, theirs)
            if ids == rids and _first_label(rids, rlabels) < _first_label(ids, labels)
        )
        first_chars: dict[str, int] = {}
        for row, (ids, labels), (rids, rlabels) in zip(pool, ours, theirs):
            if ids == rids and labels != rlabels:
                first = row["messages"][1]["content"][:1]
                kind = "digit" if first.isdigit() else "newline" if first == "\n" else "other"
                first_chars[kind] = first_chars.get(kind, 0) + 1
        truncated = sum(len(ids) >= 2048 for ids, _ in ours)
        print(
            f"SFT: {len(pool)} conversations; input ids equal on {sum(same_ids)}, ids and labels on {sum(same_labels)}"
        )
        print(
            f"  ids differ: {len(pool) - sum(same_ids)} rows, of which {sum(s for s, e in zip(spaces, same_ids) if not e)} have a run of spaces"
        )
        print(f"  rows with runs of spaces: {sum(spaces)}")
        print(
            f"  labels differ with equal ids: {sum(ids_equal and not all_equal for ids_equal, all_equal in zip(same_ids, same_labels))} rows; the reference also trains the first answer token on {first_token_rows}"
        )
        print(f"  those rows' answers start with: {first_chars}")
        print(
            f"  answers starting with a digit: {sum(c.isdigit() for c in answer_starts)}, with a newline: {sum(c == chr(10) for c in answer_starts)}"
        )
        print(f"  truncated at 2048 tokens: {truncated} rows")
        left = ref["sft"]["left_padding"]
        print(
            f"  reference left padding (its Mistral path): real tokens trained {left['real_tokens_trained']}, padding tokens trained {left['padding_tokens_trained']} over {left['rows']} rows"
        )
        print(f"  98% split: {len(ref['sft']['train_indices'])} of {len(pool)} rows trained by the reference")
        for name, row in ref["sft"]["extra"].items():
            trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE]
            print(f"  {name}: reference trains {len(trained)} tokens: {sp.id_to_piece(trained) if trained else []}")

        # DPO
        pairs = to_preference_dataset(
            Dataset.from_list([{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in _prefs()])
        )
        dpo = DPOTrainer(
            model=model, args=DPOConfig(**common, max_length=2048), train_dataset=pairs, processing_class=tokenizer
        )
        ours = dpo.train_dataset
        theirs = ref["dpo"]
        print(f"DPO: {len(theirs)} pairs")
        first = theirs[0]
        print(
            "  reference prompt text:",
            repr(first["text"]["prompt"][-60:]),
            "chosen text:",
            repr(first["text"]["chosen"][:30]),
            "...",
            repr(first["text"]["chosen"][-12:]),
        )
        print(
            "  reference prompt ids end:",
            sp.id_to_piece(first["prompt_input_ids"][-4:]),
            "chosen ids end:",
            first["chosen_input_ids"][-3:],
        )
        print(
            "  deita-hf prompt ids start/end:",
            sp.id_to_piece(ours[0]["prompt_ids"][:3]),
            sp.id_to_piece(ours[0]["prompt_ids"][-4:]),
            "chosen ids:",
            sp.id_to_piece(ours[0]["chosen_ids"][:2]),
            "...",
            ours[0]["chosen_ids"][-2:],
        )
        print(
            f"  deita-hf truncation: max_length {dpo.args.max_length}, {dpo.args.truncation_mode}; pairs over it: {sum(len(r['prompt_ids']) + max(len(r['chosen_ids']), len(r['rejected_ids'])) > 2048 for r in ours)}"
        )
        prompt_cut = sum(len(r["prompt_input_ids"]) == 512 for r in theirs)
        long_prompts = sum(len(sp.encode(r["text"]["prompt"])) > 512 for r in theirs)
        print(f"  reference prompts over 512 tokens: {long_prompts}, cut to their last 512: {prompt_cut}")
        double_eos = sum(r["chosen_input_ids"][-2:] == [2, 2] for r in theirs)
        print(f"  reference chosen answers ending with two EOS: {double_eos}")
        texts = [r["text"]["prompt"] + r["text"]["chosen"] + r["text"]["rejected"] for r in theirs]
        print(f"  pairs with a run of spaces: {sum(bool(re.search('  ', text)) for text in texts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    ref = steps.add_parser("reference", help="run the reference's code (reference environment)")
    ref.add_argument("--deita-repo", required=True, help="a git checkout or mirror of hkust-nlp/deita")
    ref.add_argument("--tokenizer-model", required=True, help="the Mistral-7B-v0.1 tokenizer.model")
    ref.add_argument("--out", default="reference_parity.json")
    cmp = steps.add_parser("compare", help="deita-hf beside the reference's output (deita-hf environment)")
    cmp.add_argument("--reference", default="reference_parity.json")
    args = parser.parse_args()
    reference(args) if args.step == "reference" else compare(args)


if __name__ == "__main__":
    main()
