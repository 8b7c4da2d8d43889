"""``lm-edit sweep``: sequential-editing damage studies, evaluated at edit checkpoints."""
