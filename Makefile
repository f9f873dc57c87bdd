# rldk: every target works from a fresh clone; `make test` and `make demo` create .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch pinned: 2.13.0 is the CPU build on this machine's disk; a bare `torch` pulls CUDA.
TORCH  := torch==2.13.0

.PHONY: install test demo monitor-demo fixtures fixtures-grpo bench lint clean \
        matrix eval-detectors comprehensive-demo determinism-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,demo,tensorboard,hf,wandb,ray,real,notify]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

demo: monitor-demo

monitor-demo: $(STAMP)
	$(PY) demos/monitor_demo.py

fixtures: $(STAMP)
	$(PY) -m rldk_engine.cli fixtures --out test_artifacts

fixtures-grpo: $(STAMP)
	$(PY) -m rldk_engine.cli fixtures --grpo --out test_artifacts/logs_grpo

matrix: $(STAMP)
	$(PY) -m rldk_engine.cli matrix --out rldk_reports

eval-detectors: $(STAMP)
	$(PY) -m rldk_engine.cli eval-detectors --seeds 5 --out rldk_reports

comprehensive-demo: $(STAMP)
	$(PY) demos/comprehensive_ppo_forensics.py

# exit 1 (replicas differ) is the expected verdict of the nondet simulation
determinism-demo: $(STAMP)
	$(PY) -m rldk_engine.cli determinism --cmd "$(PY) demos/determinism_sim.py --mode nondet --steps 200 --sleep 0.02" \
		--compare kl,policy_loss,reward_mean --replicas 4 --output-dir artifacts/determinism_nondet || test $$? -eq 1
	$(PY) -m rldk_engine.cli determinism --cmd "$(PY) demos/determinism_sim.py --mode deterministic --steps 200 --sleep 0.02" \
		--compare kl,policy_loss,reward_mean --replicas 4 --output-dir artifacts/determinism_det

bench: $(STAMP)
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check rldk_engine rldk_tui tests demos bench
	$(VENV)/bin/mypy rldk_engine rldk_tui

clean:
	rm -rf $(VENV) artifacts test_artifacts rldk_reports bench/out .pytest_cache
