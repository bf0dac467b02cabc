"""Datasets: the JSONL manifest, synthetic data generators and loaders for real corpora."""
