# The README's two promises: `make demo` and `make test` work on a fresh Debian / Raspberry Pi OS.
VENV ?= .venv
export VENV

.PHONY: demo test test-floor install clean

demo:
	scripts/bootstrap.sh demo
	$(VENV)/bin/spotify-logger demo

test:
	scripts/bootstrap.sh test
	$(VENV)/bin/python -m pytest -n 2   # the suite mostly waits on sleeps and sockets: 2 workers halve it

# The tests at the libraries' edges (Redis, HTTP, retries, logs) on the lowest versions
# setup.cfg admits (.ci/floor.txt), in a venv of their own.
FLOOR_TESTS = tests/test_store.py tests/test_api.py tests/test_httpsession.py tests/test_token_lifecycle.py \
	tests/test_logs.py tests/test_spool.py tests/test_extract.py tests/test_tracker.py tests/test_faults.py
test-floor:
	PIP_CONSTRAINT=.ci/floor.txt VENV=.venv-floor scripts/bootstrap.sh test
	.venv-floor/bin/python -m pytest -n 2 $(FLOOR_TESTS)

install:
	scripts/bootstrap.sh

clean:
	rm -rf $(VENV) .venv-floor build *.egg-info .pytest_cache
