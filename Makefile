# The README's two promises: `make demo` and `make test` work on a fresh Debian / Raspberry Pi OS.
VENV ?= .venv
export VENV

.PHONY: demo test install clean

demo:
	scripts/bootstrap.sh demo
	$(VENV)/bin/spotify-logger demo

test:
	scripts/bootstrap.sh test
	$(VENV)/bin/python -m pytest -n 2   # the suite mostly waits on sleeps and sockets: 2 workers halve it

install:
	scripts/bootstrap.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
