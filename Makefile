# The two commands of the README. Both set everything up first (idempotent, fast when done).
.PHONY: run test

run:
	scripts/setup.sh
	.venv/bin/python app.py

test:
	scripts/setup.sh --test
	.venv/bin/python -m pytest -q tests

