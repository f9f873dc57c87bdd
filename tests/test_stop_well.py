"""Stop well (issue 18): a real tiny transformers Trainer keeps a checkpoint at the stop step,
records it and the resume plan, notifies, and can end the script with exit code 3."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO

pytest.importorskip("transformers", reason="the 'hf' extra (transformers) is not installed")
pytest.importorskip("torch", reason="torch is not installed")

# A script, so the exit-code hook acts on its own process (never on pytest's).
TRAIN = textwrap.dedent('''
    import sys, torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
    from rldk_engine.integrations.hf import RLDKCallback

    out, kl, exit_code, save, notify = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]

    class KLTrainer(Trainer):
        def log(self, logs, *args, **kwargs):
            if "loss" in logs:
                logs["kl"] = kl if self.state.global_step >= 4 else 0.02
            super().log(logs, *args, **kwargs)

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32, n_positions=16))
    data = [{"input_ids": torch.randint(0, 32, (8,))} for _ in range(16)]
    for row in data:
        row["labels"] = row["input_ids"].clone()
    args = TrainingArguments(output_dir=out, max_steps=30, per_device_train_batch_size=2,
                             logging_steps=1, save_strategy="steps", save_steps=3, report_to=[],
                             use_cpu=True, disable_tqdm=True)
    cb = RLDKCallback(preset="ppo", exit_code_on_stop=None if exit_code == "none" else int(exit_code),
                      save_on_stop=save == "save", notify=notify)
    Trainer_ = KLTrainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    Trainer_.train()
    print("after train: global_step", Trainer_.state.global_step, flush=True)
''')


def _train(tmp_path, kl=0.5, exit_code="none", save="save", notify=()):
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(script), str(out), str(kl), exit_code, save, *notify],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    return proc, out


def test_stop_saves_a_checkpoint_records_it_and_the_resume_plan(tmp_path):
    proc, out = _train(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]  # exit_code_on_stop is opt-in
    # kl > 0.35 from step 4 on: kl_spike (for 5) fires at step 8; save_steps=3 saved 3 and 6
    assert "after train: global_step 8" in proc.stdout
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6", "checkpoint-8"]
    status = json.loads((out / "rldk" / "status.json").read_text())
    assert status["state"] == "stopped" and status["stop_step"] == 8
    assert status["checkpoint_saved"] == str(out / "checkpoint-8")
    plan = status["resume"]
    assert plan["first_bad_step"] == 4 and plan["last_healthy_step"] == 3
    assert plan["checkpoint"] == str(out / "checkpoint-3")
    assert plan["rules"] == ["kl_spike"]
    assert json.loads((out / "rldk_reports" / "resume_plan.json").read_text())["runs"][0]["resume"] == plan
    assert "resume from: " + str(out / "checkpoint-3") in (out / "rldk_reports" / "resume_plan.txt").read_text()


def test_save_on_stop_off_keeps_the_old_behaviour(tmp_path):
    proc, out = _train(tmp_path, save="nosave")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert "checkpoint_saved" not in json.loads((out / "rldk" / "status.json").read_text())


def test_exit_code_on_stop_ends_the_script_with_3_after_its_own_code(tmp_path):
    proc, out = _train(tmp_path, exit_code="3")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "after train: global_step 8" in proc.stdout  # code after train() still ran, output flushed


def test_exit_code_untouched_when_the_run_was_not_stopped(tmp_path):
    proc, _ = _train(tmp_path, kl=0.01, exit_code="3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "after train: global_step 30" in proc.stdout


def test_callback_notifies_the_stop_once(tmp_path):
    pytest.importorskip("apprise")
    from test_notify import _Receiver

    receiver = _Receiver()
    try:
        proc, out = _train(tmp_path, notify=[f"json://127.0.0.1:{receiver.port}/hook"])
    finally:
        receiver.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(receiver.bodies) == 1, receiver.bodies
    text = receiver.bodies[0]["title"] + "\n" + receiver.bodies[0]["message"]
    assert "stopped by kl_spike at step 8" in text and "evidence: kl=0.5" in text
    assert "resume from: " + str(out / "checkpoint-3") in text


def test_demo_trainer_saves_on_sigint(tmp_path):
    """The three-line pattern: KeyboardInterrupt -> save the last completed step -> exit 130."""
    import signal

    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, str(REPO / "demos" / "ppo_trainer.py"), "--steps", "500",
                             "--sleep", "0.02", "--output-dir", str(ckpt), "--save-every", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps = []
    for line in proc.stdout:
        steps.append(json.loads(line)["step"])
        if len(steps) == 5:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    steps += [json.loads(line)["step"] for line in rest.splitlines() if line.startswith("{")]
    assert proc.returncode == 130, err
    saved = sorted(int(p.stem.split("_")[1]) for p in ckpt.glob("step_*.pt"))
    assert saved[-1] in (steps[-1], steps[-1] - 1)  # the last completed step
    assert {1, 3} <= set(saved)  # --save-every 2
    assert f"interrupted: saved {ckpt / f'step_{saved[-1]}.pt'}" in err
