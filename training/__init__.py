"""Training-side tools: synthetic benchmark generation and fine-tuning. Imports ``detector``."""
