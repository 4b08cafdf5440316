"""Command-line front end of damon-bpf (click). All logic lives in the damon_bpf library."""
