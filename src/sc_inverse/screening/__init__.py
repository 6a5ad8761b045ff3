"""ML screening of candidates: ALIGNN predictors, MLIP pre-relaxation, criteria, triage."""
