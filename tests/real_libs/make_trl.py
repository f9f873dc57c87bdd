"""Re-make the TRL GRPO runs of tests/data/real_made (trainer_state.json of real TRL runs on a
tiny GPT-2 built from a config, tokenizer built in code; nothing downloaded).

    PYTHONPATH=. python tests/real_libs/make_trl.py [--only NAME,...]     (~1 minute)
"""

from __future__ import annotations

from made import main

TRL = ("trl", "transformers", "datasets", "tokenizers", "accelerate", "torch")
KEEP = {"trainer/trainer_state.json": "trainer_state.json"}

RUNS = {
    "trl_grpo_length_hack": dict(
        script="trl_grpo_tiny.py", keep=KEEP, packages=TRL,
        args=["--out", "OUT", "--steps", "60", "--lr", "0.003", "--reward", "length", "--beta", "0.04",
              "--eos-bias", "3", "--max-completion", "16", "--seed", "0", "--save-state"],
        what="GRPO whose reward is the completion length (a hackable reward), starting from a model "
             "that ends early (eos logit +3); 4 prompts x 4 generations per step, cap 16 tokens, "
             "lr 3e-3, beta 0.04, seed 0."),
    "trl_grpo_sparse_reward_no_signal": dict(
        script="trl_grpo_tiny.py", keep=KEEP, packages=TRL,
        args=["--out", "OUT", "--steps", "60", "--lr", "0.0005", "--reward", "target", "--beta", "0.04",
              "--eos-bias", "3", "--max-completion", "16", "--seed", "0", "--save-state"],
        what="GRPO whose reward counts the word 'yes', from the same early-ending model as "
             "trl_grpo_length_hack (lr 5e-4): completions of 1-3 words almost never say 'yes', so "
             "most groups have identical (zero) rewards and there is no learning signal."),
    "trl_grpo_share_healthy": dict(
        script="trl_grpo_tiny.py", keep=KEEP, packages=TRL,
        args=["--out", "OUT", "--steps", "60", "--lr", "0.001", "--reward", "share", "--beta", "0.04",
              "--max-completion", "24", "--seed", "0", "--save-state"],
        what="GRPO whose reward is the share of 'yes' words (no length shortcut), unbiased model, "
             "cap 24 tokens, lr 1e-3, beta 0.04, seed 0: small steady KL, flat entropy."),
    "trl_grpo_spiky_reward_inf_grad": dict(
        script="trl_grpo_tiny.py", keep=KEEP, packages=TRL,
        args=["--out", "OUT", "--steps", "40", "--lr", "0.0001", "--reward", "spiky",
              "--scale-rewards", "none", "--beta", "0.1", "--seed", "0", "--save-state"],
        what="GRPO with a broken reward model: the 'yes' reward, but every 3rd call one completion "
             "scores 1e19 and every 5th 1e20, with reward scaling off: grad norms of ~6e18 and inf "
             "(float32 overflow) interleaved with normal ones; clipping keeps the weights finite."),
}

if __name__ == "__main__":
    raise SystemExit(main(RUNS))
