# The README's two commands are `make up` and `make test`; both install what they need first.
.PHONY: setup setup-up up test lint

VENV := .venv/bin

# Everything the tests need (apt packages, a kube-apiserver, the image base, test tools).
setup:
	bash .ci/setup

# Only what `nmcp up examples/local` needs: nmcp and the two example servers.
setup-up:
	bash .ci/setup-up

up: setup-up
	$(VENV)/nmcp up examples/local

lint:
	$(VENV)/ruff check .
	$(VENV)/lint-imports

# The container image the chart deploys, built with podman from Debian's and PyPI's packages only
# (README, "The container image"); prints its reference, localhost/nmcp:<version>.
.PHONY: image
image: setup
	bash image/build.sh

# pytest exits 5 when it collected nothing: make treats that as a failure, as it should.
test: setup lint
	$(VENV)/pytest

# Benchmarks (bench/README.md): a few minutes each, on loopback; results land in bench/results/.
.PHONY: bench bench-gateway bench-hooks bench-up bench-spares bench-metacontroller bench-capacity
bench: bench-hooks bench-gateway bench-up bench-spares bench-metacontroller bench-capacity

# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--sessions 1,16 --rounds 1".
bench-gateway:
	$(VENV)/python bench/gateway_bench.py $(BENCH_ARGS)

bench-hooks:
	$(VENV)/python bench/hooks_bench.py $(BENCH_ARGS)

bench-up:
	$(VENV)/python bench/up_bench.py $(BENCH_ARGS)

bench-spares:
	$(VENV)/python bench/spares_bench.py $(BENCH_ARGS)

bench-capacity:
	$(VENV)/python bench/gateway_capacity.py $(BENCH_ARGS)

bench-metacontroller:
	$(VENV)/python bench/metacontroller_burst.py $(BENCH_ARGS)
