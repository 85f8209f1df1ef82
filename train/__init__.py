"""sage_edge.train: SAM mask cache, SPA teacher, bi-level distillation. Needs torch (desktop GPU)."""
