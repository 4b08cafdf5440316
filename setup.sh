#!/bin/sh
# Installs everything damon-bpf needs on a Debian 12 / Ubuntu 22.04+ host, as root:
# bcc from the distribution, a kernel headers tree for bcc, a venv that sees bcc, the project with its test extras,
# and the real programs the end-to-end tests drive (sqlite3, make + gcc, PostgreSQL with pgbench).
set -eu
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive

apt-get update -q
apt-get install -y -q python3-bpfcc python3-venv python3-pip gcc make tmux bpftrace linux-perf 2>/dev/null \
  || apt-get install -y -q python3-bpfcc python3-venv python3-pip gcc make tmux bpftrace
# Real programs nobody here wrote, for the end-to-end tests: sqlite3, a gcc build with make, PostgreSQL + pgbench.
apt-get install -y -q sqlite3 postgresql postgresql-contrib
# A Prometheus server and promtool: the metrics tests scrape a running monitor with the real thing.
apt-get install -y -q prometheus
# Headers matching the running kernel where the archive has them; otherwise the distribution's
# generic package (damon-bpf finds that tree itself and tells you it is using it).
apt-get install -y -q "linux-headers-$(uname -r)" 2>/dev/null \
  || apt-get install -y -q "linux-headers-$(dpkg --print-architecture)" 2>/dev/null \
  || apt-get install -y -q linux-headers-generic

# bcc is a system package for /usr/bin/python3, so the venv must be made from that Python and see its site-packages.
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q --force-reinstall --no-deps . && .venv/bin/pip install -q '.[test]'
.venv/bin/damon-bpf --version
