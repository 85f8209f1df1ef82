"""Torch model definitions (student; the teacher lives in sage_edge.train). Importing this needs torch."""
