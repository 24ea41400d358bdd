# The two commands of the README. Each sets up what is missing first (scripts/bootstrap.sh).
.PHONY: demo test lint pytest bootstrap-demo bootstrap-test

demo: bootstrap-demo
	.venv/bin/autograder demo

# Lint, types, then the test suite: what CI runs (.ci/run).
test: bootstrap-test
	$(MAKE) --no-print-directory lint
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check autograder tests bench scripts
	.venv/bin/ruff format --check autograder tests bench scripts
	.venv/bin/mypy

bootstrap-demo:
	@bash scripts/bootstrap.sh demo

bootstrap-test:
	@bash scripts/bootstrap.sh test
