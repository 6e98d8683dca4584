"""What users run on their own model: the adapter dry run, the transfer probe, the gradient balance, the margin."""
