"""Training the study's six VAE methods in PyTorch (issue 4)."""
