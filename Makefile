# The README's two commands are `make up` and `make test`; both install what they need first.
.PHONY: setup up test lint

VENV := .venv/bin

setup:
	bash .ci/setup

up: setup
	$(VENV)/nmcp up examples/local

lint:
	$(VENV)/ruff check .
	$(VENV)/lint-imports

# pytest exits 5 when it collected nothing: make treats that as a failure, as it should.
test: setup lint
	$(VENV)/pytest
