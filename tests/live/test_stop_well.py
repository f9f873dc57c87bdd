"""Stop well (issue 18): a real tiny transformers Trainer keeps a checkpoint at the stop step,
records it and the resume plan, notifies, and can end the script with exit code 3."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import MONITOR, REPO


@pytest.fixture(scope="module", autouse=True)
def _needs_the_real_libraries():
    # Imported when a test of this module runs, not at collection (keeps collecting fast).
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


# ----------------------------------------------------------------------------- the monitor

# A trainer that saves checkpoint-N every 3 steps under --output_dir, logs kl > 0.35 from
# step 6 (kl_spike, for 5, fires at step 10), and notes every signal it gets. SIGUSR1 is its
# checkpoint signal (save, then exit 0); with "ignore-usr1" it ignores that one.
TRAINER = textwrap.dedent('''
    import json, os, signal, sys, time
    out = sys.argv[sys.argv.index("--output_dir") + 1]
    mode = sys.argv[-1]
    os.makedirs(out, exist_ok=True)
    step = 0
    def note(signum, frame):
        with open(os.path.join(out, "signals.txt"), "a") as fh:
            fh.write(signal.Signals(signum).name + "\\n")
        if signum == signal.SIGUSR1 and mode == "ignore-usr1":
            return
        os.makedirs(os.path.join(out, f"checkpoint-{step}"), exist_ok=True)
        sys.exit(0 if signum == signal.SIGUSR1 else 130)
    for sig in (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)
    for step in range(1, 200):
        print(json.dumps({"step": step, "kl": 0.5 if step >= 6 else 0.05}), flush=True)
        if step % 3 == 0:
            os.makedirs(os.path.join(out, f"checkpoint-{step}"), exist_ok=True)
        time.sleep(0.03)
''')


def _monitor(tmp_path, *extra, mode="plain", trainer_out=None):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    out = trainer_out or (tmp_path / "out")
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [*MONITOR, "--preset", "ppo", "--run-dir", str(run_dir),
         *extra, "--", sys.executable, str(script), "--output_dir", str(out), mode],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return proc, out, run_dir


def test_monitor_stop_signal_first_then_resume_plan(tmp_path):
    proc, out, run_dir = _monitor(tmp_path, "--stop-signal", "SIGUSR1", "--grace", "5")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert (out / "signals.txt").read_text().splitlines() == ["SIGUSR1"]  # saved, exited: no escalation
    status = json.loads((run_dir / "status.json").read_text())
    assert status["stop_step"] == 10
    plan = status["resume"]
    assert plan["first_bad_step"] == 6 and plan["last_healthy_step"] == 5
    assert plan["checkpoint"] == str(out / "checkpoint-3")  # found from --output_dir in the command
    assert plan["rules"] == ["kl_spike"] and plan["fixes"]
    assert plan["scan_command"] == f"rldk-engine scan {run_dir / 'run.jsonl'}"
    saved = json.loads((run_dir / "rldk_reports" / "resume_plan.json").read_text())
    assert saved["runs"][0]["resume"] == plan
    assert f"resume from: {out / 'checkpoint-3'}" in proc.stderr  # the summary
    assert "try: " in proc.stderr


def test_monitor_escalates_after_the_grace_when_the_checkpoint_signal_is_ignored(tmp_path):
    proc, out, _ = _monitor(tmp_path, "--stop-signal", "USR1", "--grace", "0.3", mode="ignore-usr1")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert (out / "signals.txt").read_text().splitlines() == ["SIGUSR1", "SIGINT"]


def test_monitor_checkpoints_option_wins(tmp_path):
    elsewhere = tmp_path / "ckpts"
    (elsewhere / "global_step_4").mkdir(parents=True)
    proc, out, run_dir = _monitor(tmp_path, "--checkpoints", str(elsewhere))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["resume"]["checkpoint"] == str(elsewhere / "global_step_4")


def test_monitor_bad_stop_signal_and_notify_url_are_usage_errors(tmp_path):
    proc, _, _ = _monitor(tmp_path, "--stop-signal", "SIGNOPE")
    assert proc.returncode == 2 and "unknown signal 'SIGNOPE'" in proc.stderr
    proc, _, _ = _monitor(tmp_path, "--notify", "bogus://x")
    assert proc.returncode == 2 and "does not understand the URL bogus://" in proc.stderr


def test_monitor_notifies_the_stop_once(tmp_path):
    pytest.importorskip("apprise")
    from test_notify import _Receiver

    receiver = _Receiver()
    try:
        proc, out, run_dir = _monitor(tmp_path, "--notify", f"json://127.0.0.1:{receiver.port}/hook")
    finally:
        receiver.close()
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert len(receiver.bodies) == 1, receiver.bodies
    text = receiver.bodies[0]["title"] + "\n" + receiver.bodies[0]["message"]
    for needle in (str(run_dir), "stopped by kl_spike at step 10", "evidence: kl=0.5 (threshold 0.35)",
                   "last healthy step: 5", f"resume from: {out / 'checkpoint-3'}", "try: "):
        assert needle in text, (needle, text)


def test_monitor_with_a_dead_notifier_still_stops(tmp_path):
    """A listening socket that never answers: the stop goes out as usual, the monitor gives up
    on the message after --notify's wait and says so in monitor.log."""
    pytest.importorskip("apprise")
    import socket

    from rldk_engine.live.monitor import MonitorConfig, run_monitor
    from rldk_engine.live.rules import preset_rules

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        script = tmp_path / "trainer.py"
        script.write_text(TRAINER)
        cfg = MonitorConfig(rules=preset_rules("ppo"), run_dir=tmp_path / "run", quiet=True,
                            cmd=[sys.executable, str(script), "--output_dir", str(tmp_path / "out"), "plain"],
                            notify=[f"json://127.0.0.1:{sock.getsockname()[1]}/hook"], notify_wait=0.5,
                            passthrough=False)
        res = run_monitor(cfg)
    finally:
        sock.close()
    assert res.exit_code == 3 and res.stop_step == 10
    assert (tmp_path / "out" / "signals.txt").read_text().splitlines() == ["SIGINT"]
    assert "notify: gave up waiting" in (tmp_path / "run" / "monitor.log").read_text()


def test_user_stop_through_the_control_channel_also_saves(tmp_path):
    """A stop from `rldk-tui watch` (control.jsonl) keeps the work too."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from rldk_engine.integrations.hf import RLDKCallback

    run_dir = tmp_path / "rldk"

    class ClientAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                with open(run_dir / "control.jsonl", "a") as fh:
                    fh.write('{"action": "stop", "by": "test"}\n')

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32, n_positions=16))
    data = [{"input_ids": torch.randint(0, 32, (8,))} for _ in range(16)]
    for row in data:
        row["labels"] = row["input_ids"].clone()
    out = tmp_path / "out"
    args = TrainingArguments(output_dir=str(out), max_steps=30, per_device_train_batch_size=2, logging_steps=1,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
    callback = RLDKCallback(preset="ppo", run_dir=run_dir)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback, ClientAtStep3()])
    trainer.train()
    step = trainer.state.global_step
    assert 3 <= step <= 4 and callback.stopped_by_user
    assert [p.name for p in out.glob("checkpoint-*")] == [f"checkpoint-{step}"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["checkpoint_saved"] == str(out / f"checkpoint-{step}")
    assert status["resume"]["first_bad_step"] is None  # a user stop: no anomaly, newest checkpoint
    assert status["resume"]["checkpoint"] == str(out / f"checkpoint-{step}")
