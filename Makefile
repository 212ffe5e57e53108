# dbpipe - see README.md.  The two commands a newcomer needs:
#   make demo   a full backup -> verify -> restore round trip on a bundled SQLite sample
#   make test   everything, against private real servers (installs what it needs)
# and, with real Bareos daemons (builds Bareos once into ~/.cache/dbpipe unless installed):
#   make test-bareos
# For production hosts: make deb (a Debian package) or make install; neither needs the
# test tool chain (.venv), only python3 and, once, PyMySQL (see "vendor" below).

PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib/dbpipe
PYTHON      ?= python3
# the interpreter installed commands run with (a Bareos file daemon has no venv)
RUN_PYTHON  ?= /usr/bin/python3
BAREOS_DIR  ?= /etc/bareos
# how an installed command finds the library: the absolute LIBDIR, or (the package)
# a path relative to the command's own location
LIBDIR_CODE ?= "$(LIBDIR)"
# make deb: where the .deb goes
DEB_DIR     ?= build
FORCE       ?=

VENV    := .venv
VENDOR  := lib/vendor
PYTEST  := $(VENV)/bin/python -m pytest
# make test runs the suite in parallel (pytest-xdist): it mostly waits - fsync, server
# start-ups, deliberate signal and lock waits - so two workers more than cores keep the
# CPUs busy (2 cores: 4 workers 5.2 min at load 1-2; shared with other jobs, load 2.5-7:
# 4 workers 7.1-7.3 min, 3 workers 8.6 min, serially 17.6 min).  Each worker has its own private servers; a test module
# stays on one worker (its module-scoped servers and data are made once).  TEST_WORKERS=0
# runs it serially (docs/tests.md).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 2 )))
COMMANDS := $(wildcard bin/*)

.PHONY: all demo test test-bareos unit check-config bench bench-bareos bench-snapshot install install-bareos-config uninstall deb clean

all: $(VENDOR)/.done

# the test tool chain (pytest, ruff, servers); production installs never need it
$(VENV)/.done: requirements.txt requirements-test.txt
	tools/system-deps base
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $@

# runtime dependencies, vendored beside the library so any python3 >= 3.11 runs bin/*.
# Once vendored, install and deb work offline.  The first time pip fetches PyMySQL
# from the index, or offline from a directory of wheels:
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels make deb
$(VENDOR)/.done: requirements.txt
	rm -rf $(VENDOR)
	tools/vendor $(PYTHON) $(VENDOR) requirements.txt
	touch $@

demo: $(VENDOR)/.done
	demo/run-demo

test: $(VENDOR)/.done $(VENV)/.done
	tools/system-deps test
	$(VENV)/bin/ruff check --no-cache .
	$(MAKE) --no-print-directory check-config
	$(PYTEST) tests --ignore=tests/bareos -n $(TEST_WORKERS) --dist loadscope --durations=15

# Real Bareos daemons: an installed Bareos (packages: BAREOS_PREFIX=/usr), else one built
# once from the source tarball (BAREOS_TARBALL, default ../shared/bareos/) into the cache
# DBPIPE_BAREOS_CACHE (default ~/.cache/dbpipe/bareos-25.1.0).
test-bareos: $(VENDOR)/.done $(VENV)/.done
	tools/system-deps test
	tools/bareos-testbed-build >/dev/null
	$(PYTEST) tests/bareos --durations=15

unit: $(VENDOR)/.done $(VENV)/.done
	$(PYTEST) tests/unit

# our own rules, then Bareos' parser (bareos-dir -t, bareos-fd -t) when a Bareos is at hand
check-config: $(VENDOR)/.done $(VENV)/.done
	$(VENV)/bin/python tools/check-bareos-config bareos-config
	@if tools/bareos-testbed-build --find-only >/dev/null 2>&1; then $(PYTEST) tests/bareos/test_config.py; \
	else echo "check-config: no Bareos here yet; make test-bareos runs bareos-dir -t"; fi

bench: $(VENDOR)/.done $(VENV)/.done
	tools/system-deps test
	$(VENV)/bin/python bench/run-bench

# real Bareos backup jobs: bare pg_dump reader vs dbpipe-dump reader (docs/bareos.md)
bench-bareos: $(VENDOR)/.done $(VENV)/.done
	tools/system-deps test
	tools/bareos-testbed-build >/dev/null
	$(VENV)/bin/python bench/bareos-jobs

# snapshot mode vs method 4.3: maintenance window at 1 and 8 GiB (root, btrfs, loop
# devices; ~10 min, ~2 GiB in /var/tmp while it runs), figures for docs/snapshot.md
bench-snapshot: $(VENDOR)/.done $(VENV)/.done
	tools/system-deps test
	$(VENV)/bin/python bench/bench_snapshot.py

install: $(VENDOR)/.done
	$(RUN_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "$(RUN_PYTHON) must be Python >= 3.11" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)
	rm -rf $(DESTDIR)$(LIBDIR)/dbpipe $(DESTDIR)$(LIBDIR)/vendor
	cp -RH lib/dbpipe $(VENDOR) $(DESTDIR)$(LIBDIR)/
	find $(DESTDIR)$(LIBDIR) -name __pycache__ -prune -exec rm -rf {} +
	rm -f $(DESTDIR)$(LIBDIR)/vendor/.done
	chmod -R u=rwX,go=rX $(DESTDIR)$(LIBDIR)
	for cmd in $(COMMANDS); do \
	  sed -e '1s|^#!.*|#!$(RUN_PYTHON)|' -e 's|^LIBDIR = .*|LIBDIR = $(LIBDIR_CODE)|' $$cmd \
	    > $(DESTDIR)$(BINDIR)/$$(basename $$cmd) && chmod 755 $(DESTDIR)$(BINDIR)/$$(basename $$cmd); \
	done

# a Debian package (architecture all) of the commands, the library with PyMySQL, the
# Bareos resources (/usr/share/dbpipe/bareos-config, paths of the package) and the docs
deb: $(VENDOR)/.done
	tools/build-deb $(DEB_DIR)

uninstall:
	for cmd in $(COMMANDS); do rm -f $(DESTDIR)$(BINDIR)/$$(basename $$cmd); done
	rm -rf $(DESTDIR)$(LIBDIR)

# group bareos (when it exists): bareos-dir runs as user bareos and must read them
install-bareos-config:
	@group=$$(getent group bareos >/dev/null && echo "-g bareos"); \
	cd bareos-config && find . -type f -name '*.conf' | sort | while read -r file; do \
	  target="$(DESTDIR)$(BAREOS_DIR)/$${file#./}"; \
	  if [ -e "$$target" ] && [ -z "$(FORCE)" ]; then \
	    echo "kept existing $$target (FORCE=1 overwrites)"; \
	  else \
	    install -D -m 0640 $$group "$$file" "$$target" && echo "installed $$target" || exit 1; \
	  fi; \
	done

clean:
	rm -rf $(VENV) $(VENDOR) build dist lib/*.egg-info .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
