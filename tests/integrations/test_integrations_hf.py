"""RLDKCallback inside a real transformers.Trainer (tiny model from a config, no download)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from rldk_engine.ingest.parse import canonical_metrics

MAX_STEPS = 30


@pytest.fixture(scope="module")
def torch():
    # Imported here, not at module level, so collecting the suite stays fast.
    return pytest.importorskip("torch", reason="torch is not installed")


@pytest.fixture(scope="module")
def hf(torch):
    """transformers and the RLDKCallback (which imports transformers), or a skip."""
    transformers = pytest.importorskip("transformers", reason="the 'hf' extra (transformers) is not installed")
    from rldk_engine.integrations.hf import RLDKCallback

    class KLTrainer(transformers.Trainer):
        """Logs a KL like TRL's PPO trainer does, under TRL's key name."""

        kl_value = 0.5

        def log(self, logs, *args, **kwargs):
            if "loss" in logs:
                logs["train/kl"] = self.kl_value
            super().log(logs, *args, **kwargs)

    def tiny_trainer(tmp_path, kl: float, callback):
        torch.manual_seed(0)
        config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32, n_positions=16)
        model = transformers.GPT2LMHeadModel(config)
        data = [{"input_ids": torch.randint(0, 32, (8,))} for _ in range(16)]
        for row in data:
            row["labels"] = row["input_ids"].clone()
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), max_steps=MAX_STEPS, per_device_train_batch_size=2,
            logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
            learning_rate=1e-3,
        )
        trainer = KLTrainer(model=model, args=args, train_dataset=data, callbacks=[callback])
        trainer.kl_value = kl
        return trainer

    return SimpleNamespace(transformers=transformers, RLDKCallback=RLDKCallback, tiny_trainer=tiny_trainer)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_kl_guardrail_stops_a_real_trainer(hf, tmp_path, caplog):
    run_dir = tmp_path / "rldk"
    callback = hf.RLDKCallback(preset="ppo", run_dir=run_dir)
    trainer = hf.tiny_trainer(tmp_path, kl=0.5, callback=callback)
    with caplog.at_level(logging.WARNING, logger="rldk"):
        trainer.train()
    # ppo kl_spike: kl > 0.35 for 5 consecutive steps -> stop at the 5th logged step
    assert trainer.state.global_step == 5 < MAX_STEPS
    assert callback.stop_rule == "kl_spike" and callback.stop_step == 5
    assert "guardrail kl_spike fired at step 5" in caplog.text
    assert "stopping training" in caplog.text

    rows = _rows(run_dir / "run.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["kl"] == 0.5 and "loss" in r and "time" in r for r in rows)
    alerts = _rows(run_dir / "alerts.jsonl")
    fired = [a for a in alerts if a["event"] == "fire"]
    assert [(a["rule"], a["step"], a["action"]) for a in fired] == [("kl_spike", 5, "stop")]
    assert {"time", "metric", "value", "threshold", "severity", "message"} <= set(fired[0])
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "stopped" and status["stop_reason"] == "guardrail"
    assert status["stop_rule"] == "kl_spike" and status["last_step"] == 5


def test_healthy_run_trains_to_the_end_and_default_run_dir(hf, tmp_path):
    callback = hf.RLDKCallback(preset="ppo", auto_stop=True)
    trainer = hf.tiny_trainer(tmp_path, kl=0.02, callback=callback)
    trainer.args.max_steps = 8
    trainer.train()
    assert trainer.state.global_step == 8 and not callback.stopped
    run_dir = tmp_path / "out" / "rldk"  # default: <output_dir>/rldk
    assert len(_rows(run_dir / "run.jsonl")) == 8
    assert not [a for a in _rows(run_dir / "alerts.jsonl") if a["event"] == "fire"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "exited"


def test_auto_stop_off_alerts_but_keeps_training(hf, tmp_path):
    callback = hf.RLDKCallback(preset="ppo", run_dir=tmp_path / "r", auto_stop=False)
    trainer = hf.tiny_trainer(tmp_path, kl=0.5, callback=callback)
    trainer.args.max_steps = 7
    trainer.train()
    assert trainer.state.global_step == 7 and not callback.stopped
    assert [a.rule for a in callback.alerts if a.event == "fire"] == ["kl_spike"]


def test_canonical_metrics_maps_trainer_logs(torch):
    logs = {"train/kl": torch.tensor(0.25), "learning_rate": 1e-4, "grad_norm": 2.0,
            "train/entropy_loss": -1.5, "note": "text", "epoch": 0.5}
    assert canonical_metrics(logs) == {"kl": 0.25, "lr": 1e-4, "grad_norm": 2.0,
                                    "entropy": 1.5, "epoch": 0.5}



def test_stop_from_the_control_channel_reaches_the_trainer(hf, tmp_path):
    """`rldk-tui watch` on this run dir: its kill key appends to control.jsonl."""
    run_dir = tmp_path / "rldk"
    run_dir.mkdir()
    (run_dir / "control.jsonl").write_text('{"action": "stop", "by": "stale"}\n')  # before start: ignored

    class ClientAtStep3(hf.transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                with open(run_dir / "control.jsonl", "a") as fh:
                    fh.write('{"action": "stop", "by": "test"}\n')

    callback = hf.RLDKCallback(preset="ppo", run_dir=run_dir)
    trainer = hf.tiny_trainer(tmp_path, kl=0.02, callback=callback)
    trainer.add_callback(ClientAtStep3())
    trainer.train()
    assert 3 <= trainer.state.global_step <= 4 < MAX_STEPS
    assert callback.stopped_by_user and not callback.stopped
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "stopped" and status["stop_reason"] == "user"
