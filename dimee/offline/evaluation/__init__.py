"""The offline evaluator: every method of DESIGN.md section 2 on recorded test exits, plus report and plots."""
