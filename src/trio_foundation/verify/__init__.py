"""Verification tools users run: the TLC runner, trace export, the linearizability
checker, the cluster simulator's nemeses and history recording."""
