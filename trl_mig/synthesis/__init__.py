"""Chain-of-thought synthesis with a teacher model (`trl-mig synthesize-cot`, DESIGN.md section 5)."""
