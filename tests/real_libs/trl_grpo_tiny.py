"""A tiny TRL GRPO run on CPU with nothing downloaded.

The policy is a 1-layer GPT-2 built from a config; the tokenizer is a word-level
`tokenizers` model built in code and wrapped in PreTrainedTokenizerFast. Both are saved to
a local folder first because TRL loads the reference model from a path when beta > 0.

--reward length pays for every completion token (a reward that can be hacked: completions
run to the cap); --reward target pays for the word "yes" (sparse when the policy answers
briefly; longer completions get more chances); --reward share pays for the share of "yes"
words (a signal with no length shortcut); --reward spiky is the target reward with, now and
then, an overflowing value (1e19 or 1e20) as a broken reward model would give (huge and inf
grad norms). --rldk-run-dir adds rldk's RLDKCallback (in-process guardrails).
Used by tests/real_libs, the golden-input recorder and tests/real_libs/make_*.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WORDS = ["yes", "no", "the", "a", "cat", "dog", "sat", "ran", "on", "mat", "big", "red",
         "and", "then", "it", "was", "good", "bad", "up", "down"]
PROMPTS = ["the cat", "a dog", "it was", "the mat", "a big red", "then it", "the dog ran", "up and"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="work folder (model + trainer output)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1, help="KL coefficient (> 0 logs kl)")
    parser.add_argument("--reward", choices=["length", "target", "share", "spiky"], default="target")
    parser.add_argument("--scale-rewards", choices=["group", "batch", "none"], default="group")
    parser.add_argument("--save-state", action="store_true",
                        help="also write trainer_state.json (log_history) to OUT/trainer")
    parser.add_argument("--max-completion", type=int, default=12)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--eos-bias", type=float, default=0.0,
                        help="start from a model that ends early: adds this to every <eos> logit "
                             "(like a pretrained model that answers briefly)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rldk-run-dir", default=None, help="add RLDKCallback writing here")
    parser.add_argument("--rldk-preset", default="grpo")
    return parser


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {token: index for index, token in enumerate(specials + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>", bos_token="<eos>", padding_side="left")


def build_model_dir(folder: Path, seed: int, eos_bias: float = 0.0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    if eos_bias:
        # logits = ln_f(h) . wte^T: a unit bias on ln_f plus the eos row along it adds ~eos_bias
        with torch.no_grad():
            direction = torch.nn.functional.normalize(torch.randn(config.n_embd), dim=0)
            model.transformer.ln_f.bias.copy_(direction)
            model.transformer.wte.weight[tokenizer.eos_token_id] = direction * eos_bias
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def length_reward(completions, **_):
    return [float(len(text.split())) for text in completions]


def target_reward(completions, **_):
    return [float(text.split().count("yes")) / 4.0 for text in completions]


_spiky_calls = [0]


def spiky_reward(completions, **_):
    """target_reward, but every 3rd call one completion gets 1e19 and every 5th 1e20."""
    _spiky_calls[0] += 1
    rewards = target_reward(completions)
    if _spiky_calls[0] % 5 == 0:
        rewards[0] = 1e20
    elif _spiky_calls[0] % 3 == 0:
        rewards[0] = 1e19
    return rewards


def share_reward(completions, **_):
    """The share of words that are "yes": a signal with no length incentive either way."""
    return [text.split().count("yes") / max(1, len(text.split())) for text in completions]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    out = Path(args.out)
    model_dir = build_model_dir(out / "tiny-gpt2", args.seed, args.eos_bias)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    dataset = Dataset.from_dict({"prompt": PROMPTS * 8})
    config = GRPOConfig(
        output_dir=str(out / "trainer"), max_steps=args.steps, learning_rate=args.lr,
        per_device_train_batch_size=4, num_generations=4, max_completion_length=args.max_completion,
        beta=args.beta, logging_steps=1, report_to="none", use_cpu=True, seed=args.seed,
        save_strategy="no", max_grad_norm=args.max_grad_norm, disable_tqdm=True,
        dataloader_num_workers=0, temperature=1.0, scale_rewards=args.scale_rewards,
    )
    callbacks = []
    if args.rldk_run_dir:
        from rldk_engine.integrations.hf import RLDKCallback

        callbacks.append(RLDKCallback(preset=args.rldk_preset, run_dir=args.rldk_run_dir))
    reward = {"length": length_reward, "target": target_reward, "share": share_reward, "spiky": spiky_reward}[args.reward]
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=callbacks)
    trainer.train()
    if args.save_state:
        trainer.state.save_to_json(str(out / "trainer" / "trainer_state.json"))
    sys.stdout.flush()
    if callbacks and callbacks[0].stopped:
        print(f"rldk stopped training: {callbacks[0].stop_rule} at step {callbacks[0].stop_step}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
