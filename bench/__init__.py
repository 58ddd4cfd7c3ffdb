"""lienthong's benchmark harness: each scenario beside its baseline, in the same run."""
