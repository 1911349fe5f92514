"""Change events (deploys, prompt template, index, model and config changes), recorded
by people and inferred from spans, so a case can show what changed near its onset."""
